"""market_data: the one place the system learns prices (synthetic, replay or Binance)."""
