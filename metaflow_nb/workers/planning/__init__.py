"""Planning workers, chained entry -> exit -> size."""
