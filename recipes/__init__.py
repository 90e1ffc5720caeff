"""The shipped recipes, one folder per task. pyproject.toml installs this folder as the data package
``taskcli.recipes``; this file makes it importable in an editable install too (setuptools' editable finder
does not find a mapped folder without one), so ``taskcli.recipe`` finds it through the import system."""
