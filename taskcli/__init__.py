"""taskcli: fine-tune, evaluate and run Hugging Face models for common tasks, from YAML recipes."""

__version__ = "0.1.0"
