import Foundation

/// The recipe presets: modern networks and training that reach the accuracy the field knows is
/// possible, on two CPU cores (BENCHMARKS.md has the measured accuracy and time of each).
///
/// Each is a spec file compiled in, so `backprop train --spec runs/NAME/experiment.json` and a
/// copy edited by hand work the same way; `Experiment.preset(named:)` parses it.
extension Experiment {
    /// The names of the recipe presets, fastest first.
    public static let recipePresetNames = ["mnist-fast", "cifar-quick", "cifar-fast"]

    static let recipeSpecs: [String: String] = [
        "mnist-fast": mnistFast,
        "cifar-quick": cifarQuick,
        "cifar-fast": cifarFast,
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

    /// CIFAR-10 to 90 % in under 5 minutes: airbench94's network at airbench's "cheaper variant"
    /// widths 64 / 128 / 128 (airbench: 64 / 256 / 256), 46 % of its arithmetic. A frozen 2x2
    /// whitening conv (3→24, from the first 5,000 shuffled training images) whose bias trains for
    /// the first epoch (+0.45 points at 2.5 epochs, seed 42), and GELU, then three
    /// groups of conv 3x3 → max pool → BatchNorm → GELU → conv 3x3 → BatchNorm → GELU,
    /// convolutions initialised as identity, BatchNorm with a bias only (its learning rate ×64),
    /// momentum 0.4 and eps 1e-12, global max pooling, a linear layer without bias and logits ×
    /// 1/9. Trained as airbench94_muon trains: Muon for the convolution filters (rate 0.24,
    /// momentum 0.6), Nesterov SGD (0.85) for the rest at airbench's rate and decay for a mean
    /// loss (α = 1.5, λ = 1.33e-3, BatchNorm biases decayed too), the rates falling linearly to
    /// zero; 3 epochs (147 batches of 1024), label smoothing 0.2, alternating flips and ±2 px
    /// reflected translations; predictions average the image and its mirror. (2.75 epochs gave
    /// 90.06 % on three seeds with the direct convolutions and 89.84 % with the Winograd ones,
    /// whose rounding differs; BENCHMARKS.md, sessions 16 and 18.)
    static let cifarQuick = airbench(name: "cifar-quick", widths: (64, 128, 128), whiteningBiasEpochs: 1, biasDecay: true,
                                     training: """
          {
            "iterations": 147, "batch_size": 1024, "train_size": 50000, "validation_size": 0,
            "optimizer": "muon", "learning_rate": 1.5, "momentum": 0.85, "nesterov": true, "weight_decay": 0.0013333333,
            "muon_learning_rate": 0.24, "muon_momentum": 0.6,
            "schedule": "onecycle:pct_start=0.01,anneal_strategy=linear,div_factor=1,final_div_factor=10000,cycle_momentum=false",
            "label_smoothing": 0.2, "augmentation": "altflip,translate:2:reflect",
            "test_time_augmentation": "flip",
            "validation_interval": 100000
          }
        """)

    /// CIFAR-10 to 94 % within the hour: airbench94 (KellerJordan/cifar10-airbench) — the network
    /// of `cifar-quick` at widths 64 / 256 / 256, 118 M multiply-adds per image, its whitening bias
    /// trained for the first 3 epochs — trained as `cifar-quick` and airbench94_muon train it:
    /// Muon for the convolution filters, Nesterov SGD at airbench's rate and decay for the rest,
    /// the rates falling linearly to zero; for 11 epochs (538 steps of 1024; airbench94_muon runs
    /// 8 of 2000), with test-time augmentation over the image, its mirror and their diagonal
    /// 1-pixel moves. (Before, airbench94's Nesterov SGD with Lookahead, 11 epochs: 94.03 % on two
    /// seeds with the direct convolutions, 93.88 % with the Winograd ones; BENCHMARKS.md, sessions
    /// 12 and 19.)
    static let cifarFast = airbench(name: "cifar-fast", widths: (64, 256, 256), whiteningBiasEpochs: 3, biasDecay: true, training: """
          {
            "iterations": 538, "batch_size": 1024, "train_size": 50000, "validation_size": 0,
            "optimizer": "muon", "learning_rate": 1.5, "momentum": 0.85, "nesterov": true, "weight_decay": 0.0013333333,
            "muon_learning_rate": 0.24, "muon_momentum": 0.6,
            "schedule": "onecycle:pct_start=0.01,anneal_strategy=linear,div_factor=1,final_div_factor=10000,cycle_momentum=false",
            "label_smoothing": 0.2, "augmentation": "altflip,translate:2:reflect",
            "test_time_augmentation": "flip,translate:1",
            "validation_interval": 100000
          }
        """)

    /// airbench94's network (see `cifarQuick`) at `widths`, as a CIFAR-10 spec with `training`
    /// (a JSON object) as its training settings. `whiteningBiasEpochs`: the whitening layer gets a
    /// bias trained for that many epochs (nil: no bias); `biasDecay`: weight decay applies to the
    /// BatchNorm biases too.
    static func airbench(name: String, widths: (Int, Int, Int), whiteningBiasEpochs: Int? = nil, biasDecay: Bool = false,
                         training: String) -> String {
        let conv = { (width: Int) in
            #"{"type": "conv2d", "out_channels": \#(width), "kernel_size": 3, "padding": 1, "bias": false, "init": "he_dirac", "init_scale": 0.408},"#
        }
        let decay = biasDecay ? #", "bias_decay": true"# : ""
        let norm = #"{"type": "batchnorm2d", "affine": "bias", "bias_lr_scale": 64\#(decay), "eps": 1e-12, "momentum": 0.4}, {"type": "gelu"},"#
        let whiteningBias = whiteningBiasEpochs.map { #""bias": true, "bias_epochs": \#($0)"# } ?? #""bias": false"#
        let groups = [widths.0, widths.1, widths.2].map { width in
            [conv(width), #"{"type": "maxpool2d"},"#, norm, conv(width), norm].map { "    " + $0 }.joined(separator: "\n")
        }
        return """
            {
              "name": "\(name)",
              "dataset": "cifar10",
              "input": [3, 32, 32],
              "layers": [
                {"type": "conv2d", "out_channels": 24, "kernel_size": 2, "padding": 0, \(whiteningBias), "init": "whitening", "frozen": true},
                {"type": "gelu"},
            \(groups.joined(separator: "\n"))
                {"type": "global_maxpool2d"},
                {"type": "dense", "out_features": 10, "bias": false, "init_scale": 0.408},
                {"type": "scale", "factor": 0.1111111111111111},
                {"type": "softmaxloss"}
              ],
              "training": \(training.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            """
    }
}
