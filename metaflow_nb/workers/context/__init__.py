"""Context workers: per-bar features (ATR, swings, market structure, liquidity, sessions, trend)."""
