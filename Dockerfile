# sentiray image: the official Ray GPU image of the Ray version the project pins, with sentiray installed.
# One image runs the training RayJob (head, workers, submitter), the serving RayService and the UI.
#   docker build -t sentiray:0.1.0 .
# RAY_VERSION and PYTHON_TAG must match the venv the project is tested with (ray==2.60.0, Python 3.11):
# tests/unit/test_k8s_image.py checks them against `ray.__version__` and the running Python.
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
# `-gpu` is Ray's alias for its default CUDA build (e.g. -cu128); pin -cuXXX to match your drivers, or
# `cpu` for a CPU-only image (kind, CPU node pools).
ARG RAY_VARIANT=gpu
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${RAY_VARIANT}

# torch comes from the PyTorch index of the variant, installed before the project so pip keeps it: PyPI's
# torch wheel for Linux is the CUDA build whatever the image, GBs of CUDA libraries a CPU image never uses.
# CPU image: --build-arg RAY_VARIANT=cpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# GPU image: the index of the CUDA version of RAY_VARIANT (default: cu128).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

# The Ray image's user: `ray`, uid 1000, group `users` (gid 100); Python lives in /home/ray/anaconda3.
USER 1000:100
WORKDIR /home/ray/sentiray

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/home/ray/.cache/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1 \
    TOKENIZERS_PARALLELISM=false

# Dependencies first (cached while only the code changes). Ray is already in the image at the pinned
# version, so the extras resolve to it instead of reinstalling it.
COPY --chown=1000:100 pyproject.toml README.md ./
RUN python -m pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && mkdir -p sentiray ray_jobs serve \
 && touch sentiray/__init__.py ray_jobs/__init__.py serve/__init__.py \
 && python -m pip install ".[train,serve,k8s,s3,ui,hub]" \
 && python -m pip uninstall -y sentiray \
 && rm -rf sentiray ray_jobs serve

COPY --chown=1000:100 sentiray ./sentiray
COPY --chown=1000:100 ray_jobs ./ray_jobs
COPY --chown=1000:100 serve ./serve
RUN python -m pip install --no-deps . \
 && python -c "import ray, sentiray, ray_jobs.train, serve.app; print('ray', ray.__version__)" \
 && rm -rf build *.egg-info

# Pods run with a read-only root filesystem: Ray writes to /tmp and /dev/shm, models are cached under
# HF_HOME; the charts mount emptyDirs there.
EXPOSE 8000 8265 6379 10001 8080 8501
CMD ["python", "-m", "sentiray.cli", "--help"]
