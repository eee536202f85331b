"""The authors' DenseDepth in Keras, rebuilt as a reference (runs in a TensorFlow environment).

    KERAS_PYTHON tests/keras_reference.py --backbone densenet169 --variant released \\
        --out model.h5 --inputs rgb.npy --outputs pred.npy [--weights-only] [--seed 0]

Rebuilds the architecture of the original repository (ialhashim/DenseDepth, model.py and
layers.py) with tf_keras: ``tf_keras.applications`` DenseNet (include_top=False, no weights),
the decoder (``conv2`` 1x1 with the encoder's width for ``released``, half of it for ``head``;
``upN`` = the ``BilinearUpSampling2D`` custom layer, 2x with ``align_corners=True`` as TF1's
``resize_images``, concat with ``pool3_pool`` / ``pool2_pool`` / ``pool1`` / ``conv1/relu``,
``upN_convA``, ``upN_convB``, LeakyReLU(0.2) after convB only (``released``) or after both
(``head``); ``conv3`` to one channel). Every weight, BatchNorm statistics included, is drawn at
random (seeded); the model is saved with ``model.save(out)`` (HDF5, as Keras 2.2.4 saved the
released files) or ``save_weights``; predictions on ``inputs`` (N x H x W x 3 in [0, 1]) are the
raw network output (the reciprocal target, half resolution) saved to ``outputs``.

Only the tests run it; the product reads .h5 files with h5py alone.
"""

from __future__ import annotations

import argparse

import numpy as np


def build(backbone: str, variant: str):
    import tensorflow as tf
    import tf_keras as keras

    class BilinearUpSampling2D(keras.layers.Layer):
        """layers.py of the original repository: 2x bilinear, align_corners=True (TF1)."""

        def __init__(self, size=(2, 2), data_format=None, **kwargs):
            super().__init__(**kwargs)
            self.size = tuple(size)
            self.data_format = data_format or "channels_last"

        def call(self, inputs):
            shape = tf.shape(inputs)
            size = [shape[1] * self.size[0], shape[2] * self.size[1]]
            return tf.compat.v1.image.resize(
                inputs, size, method=tf.image.ResizeMethod.BILINEAR, align_corners=True
            )

        def get_config(self):
            return {**super().get_config(), "size": self.size, "data_format": self.data_format}

    apps = {
        "densenet169": keras.applications.DenseNet169,
        "densenet121": keras.applications.DenseNet121,
        "densenet201": keras.applications.DenseNet201,
    }
    base = apps[backbone](input_shape=(None, None, 3), include_top=False, weights=None)
    channels = int(base.layers[-1].output.shape[-1])
    filters = channels if variant == "released" else channels // 2
    leaky_a = variant == "head"

    def upproject(tensor, n, name, concat_with):
        up = BilinearUpSampling2D((2, 2), name=name + "_upsampling2d")(tensor)
        up = keras.layers.Concatenate(name=name + "_concat")(
            [up, base.get_layer(concat_with).output]
        )
        up = keras.layers.Conv2D(n, 3, padding="same", name=name + "_convA")(up)
        if leaky_a:
            up = keras.layers.LeakyReLU(alpha=0.2)(up)
        up = keras.layers.Conv2D(n, 3, padding="same", name=name + "_convB")(up)
        return keras.layers.LeakyReLU(alpha=0.2)(up)

    x = keras.layers.Conv2D(filters, 1, padding="same", name="conv2")(base.output)
    x = upproject(x, filters // 2, "up1", "pool3_pool")
    x = upproject(x, filters // 4, "up2", "pool2_pool")
    x = upproject(x, filters // 8, "up3", "pool1")
    x = upproject(x, filters // 16, "up4", "conv1/relu")
    out = keras.layers.Conv2D(1, 3, padding="same", name="conv3")(x)
    return keras.Model(inputs=base.input, outputs=out), BilinearUpSampling2D


def randomise(model, seed: int) -> None:
    """Every weight at random: He-scaled kernels, small biases, BatchNorm near identity."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = []
        for w, var in zip(weights, layer.weights, strict=True):
            name = var.name.split("/")[-1]
            if name.startswith("kernel"):
                fan_in = int(np.prod(w.shape[:-1]))
                new.append(rng.normal(0, np.sqrt(2.0 / fan_in), w.shape))
            elif name.startswith("gamma"):
                new.append(rng.uniform(0.5, 1.5, w.shape))
            elif name.startswith("moving_variance"):
                new.append(rng.uniform(0.5, 2.0, w.shape))
            else:  # bias, beta, moving_mean
                new.append(rng.normal(0, 0.1, w.shape))
        layer.set_weights([a.astype(np.float32) for a in new])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="densenet169")
    parser.add_argument("--variant", choices=("released", "head"), default="released")
    parser.add_argument("--out", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--outputs", required=True)
    parser.add_argument("--weights-only", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier", action="store_true", help="an ImageNet-style DenseNet")
    args = parser.parse_args()
    if args.classifier:
        import tf_keras as keras

        keras.applications.DenseNet121(weights=None, classes=10).save(args.out)
        return
    model, _ = build(args.backbone, args.variant)
    randomise(model, args.seed)
    if args.weights_only:
        model.save_weights(args.out)
    else:
        model.save(args.out)
    x = np.load(args.inputs).astype(np.float32)
    np.save(args.outputs, model.predict(x, verbose=0).astype(np.float32))


if __name__ == "__main__":
    main()
