"""risk: the only way to an order. Owns breakers, account state, sizing and the kill switch."""
