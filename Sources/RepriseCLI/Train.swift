import ArgumentParser
import Foundation
import Reprise

/// `reprise train`: trains a model; with no arguments, the main job (DenseNet-BC-40, k = 12,
/// memory-efficient, one epoch of Fashion-MNIST).
struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train a model. With no arguments: DenseNet-BC-40 (k=12, memory-efficient) on Fashion-MNIST for one epoch.")

  enum ScheduleName: String, ExpressibleByArgument, CaseIterable {
    case constant, multistep, cosine, cyclicCosine = "cyclic-cosine"
  }

  @OptionGroup var modelOptions: ModelOptions
  @OptionGroup var dataOptions: DataOptions

  @Option(help: "Epochs to train.") var epochs = 1
  @Option(help: "Stop after this many steps in total (across resumes); the schedule still spans --epochs.") var maxSteps: Int?
  @Option(help: "Images per step.") var batchSize = 64
  @Option(help: "Base learning rate.") var lr = 0.1
  @Option(help: "SGD momentum.") var momentum = 0.9
  @Flag(inversion: .prefixedNo, help: "Nesterov momentum.") var nesterov = true
  @Option(help: "L2 weight decay.") var weightDecay = 1e-4
  @Option(help: "Learning-rate schedule, stepped every batch: constant, multistep (x0.1 at 50% and 75%), cosine, cyclic-cosine.")
  var schedule: ScheduleName = .cosine
  @Option(help: "Restarts of the cyclic-cosine schedule (snapshot ensembles).") var cycles = 2
  @Option(help: "Label smoothing of the cross-entropy.") var labelSmoothing = 0.0
  @Flag(
    inversion: .prefixedNo,
    help: "Random crops (padding 2 for 28x28 images, 4 otherwise) and horizontal flips. Default: on for runs of more than one epoch, off for a single epoch (the main job), where it lowers accuracy.")
  var augment: Bool?
  @Flag(help: "Visit the training images in file order.") var noShuffle = false
  @Option(help: "Seed of initialisation, shuffling, augmentation and dropout.") var seed: UInt64 = 0
  @Option(help: "Threads for OpenBLAS and Reprise's loops.") var threads: Int?
  @Option(help: "Element type of the weights, activations and gradients: float32 or float64 (slower; for checking numerics).")
  var dtype: DType = .float32
  @Flag(
    inversion: .prefixedNo,
    help: "The model's hand-made checkpoint plan (DenseNet: every dense layer a region over the shared feature buffer). On unless --memory-budget or --checkpoint-segments chooses another plan.")
  var memoryEfficient = true
  @OptionGroup var planOptions: PlanOptions
  @Option(help: "Start from the model state in this safetensors file.") var initWeights: String?
  @Option(help: "Write the trained model's state here (PyTorch keys); default: a file named after the model and data.")
  var save: String?
  @Option(help: "Write the training state (model, optimiser, schedule position, random state) here after every epoch.")
  var checkpoint: String?
  @Option(help: "Continue exactly from a training state written by --checkpoint.") var resume: String?
  @Option(help: "Append one JSON object per epoch to this file.") var log: String?

  func validate() throws {
    guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
    guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
    if let maxSteps, maxSteps < 1 { throw ValidationError("--max-steps must be at least 1, got \(maxSteps)") }
    guard lr > 0 else { throw ValidationError("--lr must be positive, got \(lr)") }
    guard momentum >= 0 else { throw ValidationError("--momentum must not be negative, got \(momentum)") }
    guard !nesterov || momentum > 0 else { throw ValidationError("--nesterov needs a positive --momentum") }
    guard (0...1).contains(labelSmoothing) else { throw ValidationError("--label-smoothing must be in [0, 1]") }
    guard cycles >= 1 else { throw ValidationError("--cycles must be at least 1") }
    if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    for (flag, path) in [("--init-weights", initWeights), ("--resume", resume)] {
      if let path, !FileManager.default.isReadableFile(atPath: path) { throw ValidationError("\(flag): cannot read \(path)") }
    }
  }

  func run() throws {
    if let threads { Parallel.setThreadCount(threads) }
    let train = try dataOptions.load(.train), test = try dataOptions.load(.test)
    RandomGenerator.global = RandomGenerator(seed: seed)
    // Regularisation that only pays off over many epochs (augmentation, dropout) is off by default
    // for a single epoch, where the model underfits and it only slows learning.
    let regularized = epochs > 1
    let model = try modelOptions.make(
      inputChannels: train.imageShape[0], classCount: train.classCount, regularized: regularized)
    model.convert(to: dtype)
    if let initWeights { try model.loadState(from: initWeights) }
    let optimizer = SGD(model.parameters, learningRate: lr, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)
    let (plan, planned) = try planOptions.plan(
      for: model, memoryEfficient: memoryEfficient && !planOptions.choosesPlan, batchShape: [batchSize] + train.imageShape,
      classCount: modelOptions.classes ?? train.classCount, reservedBytes: optimizer.stateBytes)
    let mode = planOptions.label(memoryEfficient: memoryEfficient, model: modelOptions.model)
    let stepsPerEpoch = (train.count + batchSize - 1) / batchSize
    // The schedule spans all epochs; --max-steps only stops early, so a run stopped and resumed
    // follows the same learning rates as one that was not.
    let scheduleSteps = epochs * stepsPerEpoch, totalSteps = min(scheduleSteps, maxSteps ?? .max)
    let rates: LearningRateSchedule = switch schedule {
    case .constant: .constant
    case .multistep: .multiStep(milestones: [scheduleSteps / 2, scheduleSteps * 3 / 4], gamma: 0.1)
    case .cosine: .cosine(totalSteps: scheduleSteps, minimum: 0)
    case .cyclicCosine: .cyclicCosine(totalSteps: scheduleSteps, cycles: cycles)
    }
    var state = TrainingState(step: 0, dataGenerator: RandomGenerator(seed: seed &+ 1))
    if let resume { state = try TrainingState.restore(from: resume, model: model, optimizer: optimizer) }
    let augmentation = augment ?? regularized ? Augmentation(cropPadding: train.imageShape[1] >= 32 ? 4 : 2, horizontalFlip: true) : .none
    let savePath = save ?? "\(modelOptions.label)-\(dataOptions.label).safetensors"
    let progress = Progress(totalSteps: totalSteps, batchSize: batchSize)
    print("Training \(modelOptions.label) (\(model.parameterCount) parameters, \(mode)\(dtype == .float32 ? "" : ", \(dtype)")) on \(dataOptions.label): "
      + "\(train.count) training and \(test.count) test images, \(totalSteps) steps of \(batchSize)")
    if let planned { print(plannedSummary(planned)) }
    fflush(stdout)
    Allocator.resetPeak()
    try withCheckpointPlan(plan, in: model) {
      while state.step < totalSteps {
        let epoch = state.step / stepsPerEpoch
        let order = train.order(epoch: epoch, seed: seed, shuffle: !noShuffle)
        var epochLoss = 0.0, epochCorrect = 0.0, epochImages = 0
        let started = Date()
        while state.step < min(totalSteps, (epoch + 1) * stepsPerEpoch) {
          let first = (state.step % stepsPerEpoch) * batchSize
          let indices = Array(order[first..<min(first + batchSize, train.count)])
          let (images, labels) = train.batch(indices, augmentation: augmentation, using: &state.dataGenerator)
          optimizer.learningRate = rates.rate(base: lr, step: state.step)
          let metrics = trainStep(model, optimizer: optimizer, images: images.converted(to: dtype), labels: labels, labelSmoothing: labelSmoothing)
          state.step += 1
          epochLoss += metrics.loss * Double(labels.count)
          epochCorrect += metrics.accuracy * Double(labels.count)
          epochImages += labels.count
          progress.update(step: state.step, loss: metrics.loss, accuracy: metrics.accuracy)
        }
        progress.finish()
        let seconds = Date().timeIntervalSince(started)
        let testMetrics = evaluate(model, on: test)
        let line = EpochLog(
          epoch: epoch + 1, step: state.step, trainLoss: epochLoss / Double(max(epochImages, 1)),
          trainAccuracy: epochCorrect / Double(max(epochImages, 1)), testLoss: testMetrics.loss, testAccuracy: testMetrics.accuracy,
          seconds: seconds, peakBytes: Allocator.peakBytes)
        print(line.text)
        fflush(stdout)
        if let log { try line.append(to: log) }
        if let checkpoint { try state.save(to: checkpoint, model: model, optimizer: optimizer) }
      }
    }
    try model.saveState(to: savePath)
    print("Saved the model to \(savePath)")
  }

}
