"""The bundled demo model family: data generator, training, export and evaluation."""
