import ArgumentParser
import AudioFeatures
import Base
import ConvNet
import FeatureStore
import HDF5
import ModelFiles
import Training

struct ModelOption: ParsableArguments {
  @Option(help: "The model: a preset (seed, small, tiny) or a JSON spec file.")
  var model = "seed"

  @Option(help: "Number of classes (the width of the softmax layer).")
  var classes = 7
}

struct Summary: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Print a model's layers, output shapes and parameter counts, as Keras's summary does.")

  @OptionGroup var model: ModelOption

  func validate() throws {
    if model.classes < 2 { throw ValidationError("--classes must be at least 2") }
  }

  func run() throws {
    try runReportingErrors {
      print(summary(try Network(spec: try ModelSpec.load(model.model), classes: model.classes)))
    }
  }
}

struct ImportKeras: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "import-keras",
    abstract:
      "Make a checkpoint from a Keras model: Keras 3 .keras (its Normalization layer, if first, is the scaler) or "
      + ".weights.h5, or a legacy tf.keras 2 .h5 file.")

  @Argument(help: "The Keras file.")
  var file: String

  @Option(name: .shortAndLong, help: "The checkpoint to write.")
  var output: String

  @Option(
    help: "The model (preset or JSON spec); default: the file's model_config when it has one, else seed.")
  var model: String?

  @Option(
    help: ArgumentHelp(
      "Class names in the model's output order, comma-separated (default: those a sertrain .keras export "
        + "records, else the seed's 7 emotions)."))
  var classes: String?

  @Option(
    help: ArgumentHelp(
      "Fit the input standardisation on this feature file (default: a .keras file's leading Normalization "
        + "layer, else none)."))
  var scaler: String?

  @Flag(help: "Replace an existing output file.")
  var force = false

  func run() throws {
    try runReportingErrors {
      let fitted = try scaler.map { path in
        let data = try FeatureFile(path: path)
        return (scaler: try fitScaler(data), classes: data.classes, path: path)
      }
      let (checkpoint, description, standardised) = try importKeras(
        file, model: model, classes: classes, fitted: fitted)
      try checkpoint.write(to: output, overwrite: force)
      print("imported \(file) (\(description)) into \(output)")
      if !standardised {
        printError(
          "sertrain: warning: \(output) has no input standardisation. A model trained on standardised features (the "
            + "seed's StandardScaler) predicts wrongly on raw rows: the seed model imported this way fell from 0.73 "
            + "to 0.30 accuracy. Import again with --scaler FEATURES.h5, the feature file it was trained on")
      }
    }
  }
}

struct ExportKeras: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "export-keras",
    abstract:
      "Write a checkpoint for Keras: FILE.keras (Keras 3, the scaler as a leading Normalization layer), "
      + "FILE.weights.h5 (Keras 3 weights) or FILE.h5 (legacy, with model_config).")

  @Argument(help: "The checkpoint.")
  var checkpoint: String

  @Option(name: .shortAndLong, help: "The Keras file to write.")
  var output: String

  @Flag(help: "Replace an existing output file.")
  var force = false

  func run() throws {
    try runReportingErrors {
      let c = try Checkpoint.read(checkpoint)
      let network = try c.makeNetwork(path: checkpoint)
      let identity = c.scaler.isIdentity
      let native = output.hasSuffix(".keras")
      try KerasWeights.write(
        network, to: output, overwrite: force, scaler: identity ? nil : c.scaler,
        classNames: c.classNames, learningRate: c.learningRate,
        adam: c.adamM.flatMap { m in c.adamV.map { (c.adamIterations, m, $0) } })
      let kind =
        native
        ? "Keras 3 model '\(c.spec.name)', compiled (Adam at \(Float(c.learningRate))"
          + (c.adamM == nil ? "" : " after \(c.adamIterations) steps, its moments included")
          + ", categorical cross-entropy) and ready to fit, its class names in metadata.json"
          + (identity ? "" : ", with the input standardisation as its first layer, a Normalization")
        : output.hasSuffix(".weights.h5") ? "Keras 3 weights" : "legacy HDF5 model with model_config"
      print(
        "wrote \(output) (\(kind))"
          + (identity || native
            ? ""
            : "; note: this form does not carry the checkpoint's input standardisation: write NAME.keras, or apply it yourself")
          + (c.standardization == .speaker
            ? "; note: the model was trained on rows standardised per speaker (--standardize speaker): standardise "
              + "each speaker's rows by that speaker's mean and deviation per feature before predicting" : "")
      )
    }
  }
}
