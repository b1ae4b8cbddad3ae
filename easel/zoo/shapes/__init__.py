"""easel-shapes: coloured shapes on plain backgrounds, the demo model's world."""
