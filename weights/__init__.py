"""The shipped style models. Not imported: the build maps this folder to the package
``fastnst._weights`` so the ``.safetensors`` files install as package data (see pyproject.toml and
``fastnst.styles.shipped_styles_dir``). Provenance and figures: README.md here."""
