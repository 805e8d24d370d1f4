import Foundation
import Reprise

/// Reports training progress: a live line on a terminal, plain lines every 10% otherwise. The loss
/// and accuracy shown are means over the steps since the previous line (one batch's loss is too noisy).
final class Progress {
  let totalSteps: Int
  let batchSize: Int
  let isTerminal: Bool
  var started = Date()
  var stepAtStart = 0
  var lossSum = 0.0, accuracySum = 0.0, stepsSummed = 0

  /// - `live`: a live line when standard output is a terminal; off under `mpirun`, which gives
  ///   every process a terminal whatever its own output is.
  init(totalSteps: Int, batchSize: Int, live: Bool = true) {
    (self.totalSteps, self.batchSize) = (totalSteps, batchSize)
    isTerminal = live && isatty(STDOUT_FILENO) != 0
  }

  /// Starts the timing of an epoch whose first step is `step` + 1, before that step runs: a rate
  /// timed from the end of the first step would divide its images by almost no time.
  func start(afterStep step: Int) { (started, stepAtStart) = (Date(), step) }

  func update(step: Int, loss: Double, accuracy: Double) {
    (lossSum, accuracySum, stepsSummed) = (lossSum + loss, accuracySum + accuracy, stepsSummed + 1)
    let due = step % max(1, totalSteps / 10) == 0 || step == totalSteps
    guard isTerminal || due else { return }
    let elapsed = Date().timeIntervalSince(started), done = step - stepAtStart
    let rate = Double(done * batchSize) / max(elapsed, 1e-9)
    let eta = Double(totalSteps - step) * elapsed / Double(max(done, 1))
    let text = String(
      format: "step %d/%d  loss %.4f  accuracy %.2f%%  %.1f images/s  memory %.1f MiB (peak %.1f)  ETA %@", step, totalSteps,
      lossSum / Double(stepsSummed), 100 * accuracySum / Double(stepsSummed), rate,
      Double(Allocator.liveBytes) / 1_048_576, Double(Allocator.peakBytes) / 1_048_576, formatDuration(eta))
    if isTerminal { print("\r" + text, terminator: "\u{1B}[K") } else { print(text) }
    fflush(stdout)
    if due { (lossSum, accuracySum, stepsSummed) = (0, 0, 0) }
  }

  /// Prints a line of its own, below the live line on a terminal.
  func note(_ text: String) {
    print(isTerminal ? "\r\u{1B}[K" + text : text)
    fflush(stdout)
  }

  func finish() {
    if isTerminal { print("") }
    (lossSum, accuracySum, stepsSummed) = (0, 0, 0)
  }
}

/// `1h02m03s`, `4m05s` or `6s`.
func formatDuration(_ seconds: Double) -> String {
  let s = Int(seconds.rounded())
  if s >= 3600 { return String(format: "%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60) }
  return s >= 60 ? String(format: "%dm%02ds", s / 60, s % 60) : "\(s)s"
}

/// One line of the training log.
struct EpochLog: Encodable {
  var epoch: Int
  var step: Int
  var trainLoss: Double
  var trainAccuracy: Double
  var testLoss: Double
  var testAccuracy: Double
  var seconds: Double
  var peakBytes: Int

  var text: String {
    String(
      format: "epoch %d: train loss %.4f, train accuracy %.2f%%, test loss %.4f, test accuracy %.2f%%, %@, peak memory %.1f MiB",
      epoch, trainLoss, 100 * trainAccuracy, testLoss, 100 * testAccuracy, formatDuration(seconds), Double(peakBytes) / 1_048_576)
  }

  /// Appends this entry as one JSON line.
  func append(to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    var data = try encoder.encode(self)
    data.append(0x0A)
    if !FileManager.default.fileExists(atPath: path), !FileManager.default.createFile(atPath: path, contents: nil) {
      throw StateFileError.unwritable(path, "cannot create the file")
    }
    guard let handle = FileHandle(forWritingAtPath: path) else { throw StateFileError.unwritable(path, "cannot open for appending") }
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: data)
  }
}
