import Foundation

/// The recipe presets: modern networks and training that reach the accuracy the field knows is
/// possible, on two CPU cores (BENCHMARKS.md has the measured accuracy and time of each).
///
/// Each is a spec file compiled in, so `backprop train --spec runs/NAME/experiment.json` and a
/// copy edited by hand work the same way; `Experiment.preset(named:)` parses it.
extension Experiment {
    /// The names of the recipe presets, fastest first.
    public static let recipePresetNames = ["mnist-fast"]

    static let recipeSpecs: [String: String] = [
        "mnist-fast": mnistFast,
    ]

    /// MNIST to ≥ 99.5 % in under 3 minutes: three stages of conv 3x3 → max pool → BatchNorm →
    /// ReLU (24, 48, 96 channels; pooling before the normalisation, as airbench does, so that
    /// BatchNorm and ReLU touch a quarter of the pixels), a linear classifier; Nesterov SGD on a
    /// one-cycle schedule over 5 epochs, label smoothing 0.1, ±2 px translations, and an
    /// exponential moving average of the weights (the saved model), its decay warmed up so that
    /// a shortened run (`--iterations`) does not keep the initial weights in it; predictions
    /// average the logits of the image and its four 1-pixel moves (`shift:1`, +0.01 to +0.07
    /// points on seeds 42–44).
    static let mnistFast = """
        {
          "name": "mnist-fast",
          "dataset": "mnist",
          "input": [1, 28, 28],
          "layers": [
            {"type": "conv2d", "out_channels": 24, "kernel_size": 3, "padding": 1, "bias": false},
            {"type": "maxpool2d"}, {"type": "batchnorm2d"}, {"type": "relu"},
            {"type": "conv2d", "out_channels": 48, "kernel_size": 3, "padding": 1, "bias": false},
            {"type": "maxpool2d"}, {"type": "batchnorm2d"}, {"type": "relu"},
            {"type": "conv2d", "out_channels": 96, "kernel_size": 3, "padding": 1, "bias": false},
            {"type": "maxpool2d"}, {"type": "batchnorm2d"}, {"type": "relu"},
            {"type": "flatten"},
            {"type": "dense", "out_features": 10},
            {"type": "softmaxloss"}
          ],
          "training": {
            "iterations": 2344, "batch_size": 128, "train_size": 60000, "validation_size": 0,
            "optimizer": "sgd", "learning_rate": 0.2, "momentum": 0.9, "nesterov": true, "weight_decay": 0.0005,
            "schedule": "onecycle", "label_smoothing": 0.1, "augmentation": "crop:2", "ema": 0.995, "ema_warmup": true,
            "test_time_augmentation": "shift:1",
            "validation_interval": 100000
          }
        }
        """
}
