// swift-tools-version:6.0
// sertrain: a data-parallel trainer for speech emotion recognition.
import PackageDescription

// The commit sertrain is built from (`sertrain --version`, config.json, the report): the Launch scripts set
// SERTRAIN_COMMIT from git; a plain `swift build` says "unknown". Only hex digits and "-dirty" are taken.
let commit = (Context.environment["SERTRAIN_COMMIT"] ?? "").filter { $0.isHexDigit || "-dirty".contains($0) }

// MARK: - C libraries (system library targets found through pkg-config)

let cTargets: [Target] = [
  .systemLibrary(
    name: "CMPI", pkgConfig: "ompi-c",
    providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
  .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
  .systemLibrary(name: "CFFTW", pkgConfig: "fftw3f", providers: [.apt(["libfftw3-dev"])]),
  .systemLibrary(name: "CSndfile", pkgConfig: "sndfile", providers: [.apt(["libsndfile1-dev"])]),
  .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
  .systemLibrary(name: "CSoxr", pkgConfig: "soxr", providers: [.apt(["libsoxr-dev"])]),
  // The CPU's features and core count, malloc settings, the stop-signal handlers, SHA-256.
  .target(
    name: "CSystem",
    cSettings: [
      .unsafeFlags(["-O2"], .when(configuration: .debug)),
      .define("SERTRAIN_COMMIT", to: "\"\(commit.isEmpty ? "unknown" : commit)\""),
    ]),
  // The kernels, optimised in debug builds too: the CSV reader's number parsing, the audio front end's vector math,
  // and the ConvNet's.
  .target(
    name: "CAudioKernels", dependencies: ["CSystem"], cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]),
  .target(name: "CTextKernels", cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]),
  .target(
    name: "CConvKernels", dependencies: ["CSystem"], cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]),
  // Runs before main in the executable only: stop signals are recorded from its first constructor.
  .target(name: "CEntry", dependencies: ["CSystem"]),
]

// MARK: - Swift modules, C at the bottom, the command line on top

/// The numeric modules are optimised in debug builds too: their loops run 25-45x slower unoptimised, which made
/// every test that extracts audio or trains a model wait on them. Their debug builds still check overflow and
/// preconditions (`-O`, not `-Ounchecked`) and keep `@testable` access.
let optimisedInDebug: [SwiftSetting] = [.unsafeFlags(["-O"], .when(configuration: .debug))]

let swiftTargets: [Target] = [
  // Small helpers every module may use: the PRNG, clocks, core count and formatting, files written atomically.
  .target(name: "Base", dependencies: ["CSystem"]),
  // What a feature row is (the recipe, the emotions, CSV cells): no audio library beneath it.
  .target(name: "Schema"),
  .target(name: "HDF5", dependencies: ["CHDF5", "CSystem"]),
  .target(
    name: "AudioFeatures",
    dependencies: ["CSndfile", "CSoxr", "CFFTW", "COpenBLAS", "CAudioKernels", "Schema", "Base"],
    swiftSettings: optimisedInDebug),
  // The feature file stores rows with their recipe (Schema's FeatureRecipe); it links no audio library.
  .target(name: "FeatureStore", dependencies: ["HDF5", "Schema", "Base", "CTextKernels"]),
  .target(
    name: "ConvNet", dependencies: ["COpenBLAS", "CConvKernels", "CSystem", "Base"], swiftSettings: optimisedInDebug),
  .target(name: "Collective", dependencies: ["CMPI", "Base"]),
  // Process setup: OpenBLAS's environment before it loads, and the thread counts.
  .target(name: "ProcessSetup", dependencies: ["COpenBLAS", "CSystem", "ConvNet", "Base"]),
  // Feature rows of one recording (the recipe and augmentation order) and a corpus over ranks and threads.
  .target(name: "Extraction", dependencies: ["AudioFeatures", "FeatureStore", "Collective", "Base"]),
  // Everything a model is stored as: sertrain checkpoints (with the scaler) and Keras weight files.
  .target(name: "ModelFiles", dependencies: ["ConvNet", "HDF5", "Schema", "Base"]),
  .target(
    name: "Training",
    dependencies: [
      "Base", "HDF5", "FeatureStore", "AudioFeatures", "ConvNet", "ModelFiles", "Collective", "CSystem", "Schema",
    ]),
  // The benchmarks' measurements and subprocesses; their Python peers are Benchmarks/*.py.
  .target(
    name: "Bench",
    dependencies: ["Base", "Training", "FeatureStore", "ConvNet", "Collective", "AudioFeatures", "ProcessSetup"]),
  .executableTarget(
    name: "sertrain",
    dependencies: [
      "Base", "Training", "Bench", "Extraction", "ModelFiles", "ConvNet", "Collective", "AudioFeatures",
      "FeatureStore", "HDF5", "CSystem", "CEntry", "CTextKernels", "ProcessSetup",
      .product(name: "ArgumentParser", package: "swift-argument-parser"),
    ]),
]

// MARK: - Tests

let testTargets: [Target] = [
  .target(name: "_TestSupport", path: "Tests/_TestSupport"),
  .testTarget(
    name: "SmokeTests",
    dependencies: ["CMPI", "CHDF5", "CFFTW", "CSndfile", "COpenBLAS", "CSoxr", "_TestSupport"]),
  .testTarget(name: "HDF5Tests", dependencies: ["HDF5", "Base", "CSystem", "_TestSupport"]),
  .testTarget(name: "FeatureStoreTests", dependencies: ["FeatureStore", "AudioFeatures", "_TestSupport"]),
  .testTarget(name: "ConvNetTests", dependencies: ["ConvNet", "ModelFiles", "Base", "HDF5", "_TestSupport"]),
  .testTarget(name: "ProcessSetupTests", dependencies: ["ProcessSetup"]),
  .testTarget(
    name: "AudioFeaturesTests", dependencies: ["AudioFeatures", "HDF5", "_TestSupport"]),
  .testTarget(
    name: "TrainingTests",
    dependencies: ["Training", "ConvNet", "FeatureStore", "ModelFiles", "AudioFeatures", "Schema", "_TestSupport"]),
  .testTarget(
    name: "CLITests",
    dependencies: ["AudioFeatures", "FeatureStore", "HDF5", "ModelFiles", "ConvNet", "Training", "_TestSupport"]),
  // Also run under mpirun by Launch/test.sh.
  .testTarget(
    name: "MPITests",
    dependencies: [
      "Collective", "ConvNet", "FeatureStore", "Training", "Extraction", "ModelFiles", "AudioFeatures", "Base",
      "CSystem",
      "_TestSupport",
    ]),
]

let package = Package(
  name: "sertrain",
  platforms: [.macOS(.v13)],
  products: [.executable(name: "sertrain", targets: ["sertrain"])],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
  ],
  targets: cTargets + swiftTargets + testTargets,
  swiftLanguageModes: [.v5]
)
