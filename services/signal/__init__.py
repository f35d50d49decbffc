"""signal: turns market data into BUY/SELL/HOLD decisions."""
