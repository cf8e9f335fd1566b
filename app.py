"""Entry point for `python app.py` and Hugging Face Spaces: builds the Gradio app and serves it."""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from skin_demo.ui import build_app, launch  # noqa: E402

demo = build_app()

if __name__ == "__main__":
    launch(demo)
