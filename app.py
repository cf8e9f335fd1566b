"""Entry point for `python app.py` and Hugging Face Spaces: builds the Gradio app and serves it."""

import os
import signal

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from skin_demo.serving.ui import build_app, launch  # noqa: E402

demo = build_app()

if __name__ == "__main__":
    # a host stops the app with SIGTERM: close the server as on Ctrl-C, so Gradio's shutdown deletes the upload cache
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    launch(demo)
