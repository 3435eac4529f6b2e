# Align-SLM Studio on the embedded mini world (CPU). Build: docker build -t align-slm-studio .
# Run:   docker run -p 7860:7860 -v studio-data:/data align-slm-studio
# The first start builds the mini world into /data (a few minutes); later starts reuse it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    STUDIO_DATA_DIR=/data STUDIO_SERVER__HOST=0.0.0.0 STUDIO_SERVER__PORT=7860

# espeak-ng: the mini world's offline TTS; libsndfile1: audio I/O; sox: audio checks
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng libsndfile1 sox make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
# CPU build of torch first (the PyPI default would pull a multi-GB CUDA build)
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir -r requirements.txt
COPY . .
RUN pip install --no-cache-dir --no-deps -e .

VOLUME ["/data"]
EXPOSE 7860
CMD ["sh", "-c", "python -m backend bootstrap && exec python -m app"]
