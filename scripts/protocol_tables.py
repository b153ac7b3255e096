"""Print the README's table of the protocols' numbers from ``normda/reporting/published/protocols.csv``.

    python scripts/protocol_tables.py          # paste between the README's protocol-table markers
"""
from normda.reporting.protocols import markdown

if __name__ == "__main__":
    print(markdown(), end="")
