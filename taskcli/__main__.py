"""`python -m taskcli` (and so `accelerate launch -m taskcli ...`)."""

from taskcli.cli import run

if __name__ == "__main__":
    run()
