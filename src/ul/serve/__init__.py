"""`ul serve`: a local web page that puts an image through every trained model, side by side, with
its bits (`pip install 'unified-latents[serve]'`; Starlette + uvicorn, plain HTML, no CDN)."""
