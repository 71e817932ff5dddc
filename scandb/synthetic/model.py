"""The stimulus/response model behind ``scandb example``: images and neurons that respond to them.

Kept apart from the scan layout so the model (what the data means) can be read and
changed without the file bookkeeping around it: natural-photo images, Gabor receptive
fields and a linear-nonlinear population with trial-to-trial noise.
"""

from __future__ import annotations

import numpy as np

NATURAL_SPECTRUM = 1.2
"""Amplitude falls as 1/f**1.2, as in natural photos: deflate keeps ~90% of the bytes."""
IMAGE_BATCH = 256


def natural_images(rng: np.random.Generator, count: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """``count`` grey images with a natural-photo spectrum, varied brightness and contrast."""
    h, w = shape[-2], shape[-1]
    frequency = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :])
    frequency[0, 0] = 1.0
    amplitude = (frequency ** -NATURAL_SPECTRUM).astype(np.float32)
    amplitude[0, 0] = 0.0
    out = np.empty((count, *shape), dtype=dtype)
    for start in range(0, count, IMAGE_BATCH):
        b = min(IMAGE_BATCH, count - start)
        noise = rng.standard_normal((b, h, w), dtype=np.float32)
        field = np.fft.irfft2(np.fft.rfft2(noise) * amplitude, s=(h, w))
        field -= field.mean(axis=(1, 2), keepdims=True)
        field /= field.std(axis=(1, 2), keepdims=True) + 1e-6
        brightness = rng.uniform(90, 160, (b, 1, 1)).astype(np.float32)
        contrast = rng.uniform(15, 60, (b, 1, 1)).astype(np.float32)
        pixels = np.broadcast_to((brightness + contrast * field)[:, None], (b, *shape[:-2], h, w))
        if np.dtype(dtype).kind == "f":
            out[start:start + b] = pixels
        else:
            out[start:start + b] = np.clip(np.rint(pixels), 0, 255)
    return out


RF_DOWNSAMPLE = 4
"""Receptive fields live on a 4x coarser grid than the image: the model costs a small
matrix product even for 144x256 images."""
NOISE_SHAPE = 1.5
"""Gamma noise shape around each trial's rate: trial-to-trial variability with a
coefficient of variation of 0.8, near what repeated presentations show."""


def image_driven_responses(rng: np.random.Generator, images: np.ndarray, n_neurons: int, dtype: str) -> np.ndarray:
    """Responses of a linear-nonlinear population to ``images`` (trials first).

    Each neuron has a Gabor receptive field at a random place, orientation and size; its
    rate is a softplus of the filtered image, and each trial draws gamma noise around that
    rate. Repeats of one image therefore agree partly, as in real recordings (each test
    trial correlates with the mean of its image's other repeats at about 0.4 for the median
    neuron, 0 to 0.7 across neurons), and a model can learn the mapping.
    """
    n = len(images)
    h, w = images.shape[-2] // RF_DOWNSAMPLE, images.shape[-1] // RF_DOWNSAMPLE
    pixels = images.reshape(n, -1, images.shape[-2], images.shape[-1])[:, 0, :h * RF_DOWNSAMPLE, :w * RF_DOWNSAMPLE]
    coarse = pixels.reshape(n, h, RF_DOWNSAMPLE, w, RF_DOWNSAMPLE).mean(axis=(2, 4), dtype=np.float32)
    coarse = (coarse - coarse.mean()) / (coarse.std() + 1e-6)
    fields = gabor_fields(rng, n_neurons, h, w)
    drive = coarse.reshape(n, -1) @ fields.reshape(n_neurons, -1).T
    drive = (drive - drive.mean(axis=0)) / (drive.std(axis=0) + 1e-6)
    gain = rng.uniform(0.2, 1.5, n_neurons).astype(np.float32)  # some neurons barely care about the image
    offset = rng.normal(-1.0, 0.5, n_neurons).astype(np.float32)
    rate = np.logaddexp(0, gain * drive + offset)
    noisy = rng.gamma(NOISE_SHAPE, 1.0 / NOISE_SHAPE, rate.shape).astype(np.float32) * rate
    noisy[noisy < 0.1] = 0.0  # deconvolved activity is exactly zero much of the time
    return noisy.astype(dtype, copy=False)


def gabor_fields(rng: np.random.Generator, count: int, h: int, w: int) -> np.ndarray:
    """``count`` unit-norm Gabor filters on an ``h`` x ``w`` grid, (count, h, w) float32."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0.2, 0.8, (2, count, 1, 1)).astype(np.float32) * np.array([h, w], np.float32)[:, None, None, None]
    sigma = (rng.uniform(0.04, 0.1, (count, 1, 1)) * min(h, w) + 1).astype(np.float32)
    theta = rng.uniform(0, np.pi, (count, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (count, 1, 1)).astype(np.float32)
    along = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
    envelope = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2))
    fields = envelope * np.cos(2 * np.pi * along / (3 * sigma) + phase)
    fields /= np.linalg.norm(fields.reshape(count, -1), axis=1)[:, None, None] + 1e-6
    return fields.astype(np.float32)
