import TensorModule

/// Measures units of a network during one training step, for the checkpoint planner: per unit,
/// live tensor bytes before and after its forward pass, the peak during it, its time and the names
/// it tags (``checkpointName(_:_:)``); for units that run as regions, the peak, replay time and
/// bytes of their backward pass. Install it with ``profilingUnits(_:_:)``.
public final class UnitProfiler {
  /// What one unit did in the profiled step.
  public struct Measurement: Sendable {
    /// Live bytes when its forward pass started and ended, and the largest in between.
    public var liveBefore = 0, liveAfter = 0, forwardPeak = 0
    /// Seconds of its forward pass.
    public var forwardSeconds = 0.0
    /// Names it tagged for checkpoint policies.
    public var names: Set<String> = []
    /// Names of the operations it recorded whose outputs a policy may keep (`conv2d`, `matmul`, ...).
    public var keepableOperations: Set<String> = []
    /// For a region: live bytes when its backward pass started, the largest during it, and
    /// seconds of its replay.
    public var backwardLiveBefore: Int?, backwardPeak: Int?, replaySeconds: Double?
    /// The largest live bytes between the end of its forward pass and the next unit event (the
    /// loss and the start of the backward pass, after the last unit).
    public var gapPeak = 0

    /// Nothing measured yet.
    public init() {}
  }

  /// The units measured, in the order their forward passes ran.
  public private(set) var order: [ObjectIdentifier] = []
  /// The measurements by unit.
  public private(set) var measurements: [ObjectIdentifier: Measurement] = [:]
  private let measured: Set<ObjectIdentifier>
  private var current: ObjectIdentifier?
  private var lastEnded: ObjectIdentifier?
  private var started = 0.0

  /// A profiler of the units in `units` (units not listed, such as the chains that contain them,
  /// are not measured).
  public init(units: Set<ObjectIdentifier>) { measured = units }

  func probe(_ unit: ObjectIdentifier) -> Probe? { measured.contains(unit) ? Probe(self, unit) : nil }

  func noteName(_ name: String) {
    if let current { measurements[current, default: Measurement()].names.insert(name) }
  }

  func noteKeepableOperation(_ name: String) {
    if let current { measurements[current, default: Measurement()].keepableOperations.insert(name) }
  }

  private func closeGap() {
    if let last = lastEnded { measurements[last]!.gapPeak = Allocator.intervalPeakBytes }
    lastEnded = nil
  }

  fileprivate func willRun(_ unit: ObjectIdentifier) {
    closeGap()
    if measurements[unit] == nil { order.append(unit) }
    var m = measurements[unit, default: Measurement()]
    m.liveBefore = Allocator.liveBytes
    measurements[unit] = m
    (current, started) = (unit, monotonicSeconds())
    Allocator.resetIntervalPeak()
  }

  fileprivate func didRun(_ unit: ObjectIdentifier) {
    measurements[unit]!.forwardSeconds = monotonicSeconds() - started
    measurements[unit]!.liveAfter = Allocator.liveBytes
    measurements[unit]!.forwardPeak = Allocator.intervalPeakBytes
    (current, lastEnded) = (nil, unit)
    Allocator.resetIntervalPeak()
  }

  fileprivate func willReplay(_ unit: ObjectIdentifier) {
    closeGap()
    measurements[unit]!.backwardLiveBefore = Allocator.liveBytes
    started = monotonicSeconds()
    Allocator.resetIntervalPeak()
  }

  fileprivate func didReplay(_ unit: ObjectIdentifier) { measurements[unit]!.replaySeconds = monotonicSeconds() - started }

  fileprivate func didFinishBackward(_ unit: ObjectIdentifier) {
    measurements[unit]!.backwardPeak = Allocator.intervalPeakBytes
  }

  /// The profiler's view of one unit, which its region reports its backward pass to (held by the
  /// region until that has run, so the profiler lives as long).
  final class Probe: RegionObserver {
    private let profiler: UnitProfiler
    private let unit: ObjectIdentifier
    init(_ profiler: UnitProfiler, _ unit: ObjectIdentifier) { (self.profiler, self.unit) = (profiler, unit) }
    func willRun() { profiler.willRun(unit) }
    func didRun() { profiler.didRun(unit) }
    func willReplay() { profiler.willReplay(unit) }
    func didReplay() { profiler.didReplay(unit) }
    func didFinishBackward() { profiler.didFinishBackward(unit) }
  }
}

/// Runs `body` (one training step) with `profiler` measuring the units it names.
public func profilingUnits<R>(_ profiler: UnitProfiler, _ body: () throws -> R) rethrows -> R {
  try Context.current.with(\.profiler, profiler, body)
}
