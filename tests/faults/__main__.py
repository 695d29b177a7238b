"""``python -m tests.faults``: one fault run (``--help`` for its options)."""

from tests.faults.driver import app

if __name__ == "__main__":
    app(prog_name="python -m tests.faults")
