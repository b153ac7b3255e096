"""Models, adaptation methods (source only, DANN, CDAN) and the one training loop they share."""
