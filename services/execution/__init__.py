"""execution: turns approved verdicts into orders and keeps the journal. The last line of defence."""
