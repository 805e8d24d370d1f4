import TensorModule

/// What the tape holds for the backward pass after a forward pass, by operation: the results of
/// recorded operations that are still alive (kept by a pullback that needs them, or by a
/// checkpoint region's memo), with the module path of the unit that recorded them, largest first
/// (in the spirit of `jax.ad_checkpoint.print_saved_residuals`).
public struct SavedTensors: CustomStringConvertible {
  /// One operation whose result is still held.
  public struct Entry: Sendable {
    /// The operation (`conv2d`, `batchNormReLU`, `checkpoint 'features.denseblock1.denselayer3'`).
    public var operation: String
    /// The module path of the unit it ran in (empty outside any named unit).
    public var path: String
    /// The shapes of its results (for a region: of its outputs).
    public var shapes: [[Int]]
    /// Bytes of its results' storages still alive, each storage counted once in the report (for a
    /// region: with what its memo keeps).
    public var bytes: Int
  }

  /// The operations holding bytes, largest first.
  public var entries: [Entry]
  /// Live bytes the forward pass added, the result included.
  public var totalBytes: Int
  /// Of those, the bytes the entries account for; the rest are tensors no operation returned
  /// (masks, indices, random draws, statistics).
  public var listedBytes: Int { entries.reduce(0) { $0 + $1.bytes } }

  /// One line per entry, then the totals.
  public var description: String {
    let lines = entries.map { e in
      "\(e.bytes) bytes  \(e.operation)  \(e.path.isEmpty ? "-" : e.path)  \(e.shapes.map { "\($0)" }.joined(separator: " "))"
    }
    return (lines + ["\(listedBytes) bytes listed of \(totalBytes) bytes held after the forward pass"]).joined(separator: "\n")
  }
}

/// Collects the results of the operations a forward pass records (``savedTensors(naming:_:)``).
final class SavedTensorCollector {
  struct Record {
    var operation: String, path: String, shapes: [[Int]], references: [TensorStorageReference]
  }
  var records: [Record] = []
  let names: [ObjectIdentifier: String]
  var path = ""

  init(names: [ObjectIdentifier: String]) { self.names = names }

  /// Runs `body` with results noted under `path` (unchanged when nil).
  func within<R>(_ path: String?, _ body: () -> R) -> R {
    guard let path else { return body() }
    let outer = self.path
    self.path = path
    defer { self.path = outer }
    return body()
  }

  /// Notes the results of `operation`; a result that is a view of one of its `inputs` (a
  /// permutation, a reshape) allocated nothing and is left out.
  func note(_ operation: String, _ values: [Tensor], inputs: [Variable] = []) {
    let shared = Set(inputs.map { $0.value.storageReference.id })
    let references = values.map(\.storageReference).filter { !shared.contains($0.id) }
    records.append(Record(operation: operation, path: path, shapes: values.map(\.shape), references: references))
  }
}

/// Runs `forward` (a forward pass that records) and reports what the tape holds after it.
///
/// - `names`: module paths of units by identity (NN's chains give them), so that entries
///   name the unit they ran in.
/// - Returns: the forward pass's result, which the caller may differentiate, and the report.
public func savedTensors(naming names: [ObjectIdentifier: String] = [:], _ forward: () -> Variable) -> (
  output: Variable, report: SavedTensors
) {
  let context = Context.current
  let collector = SavedTensorCollector(names: names)
  let before = Allocator.liveBytes
  let output = context.with(\.savedTensors, collector) { forward() }
  let total = Allocator.liveBytes - before
  var counted = Set<ObjectIdentifier>()
  var entries: [SavedTensors.Entry] = []
  for record in collector.records {
    var bytes = 0
    for reference in record.references where reference.isAlive && counted.insert(reference.id).inserted {
      bytes += reference.byteCount
    }
    if bytes > 0 { entries.append(.init(operation: record.operation, path: record.path, shapes: record.shapes, bytes: bytes)) }
  }
  entries.sort { $0.bytes > $1.bytes }
  return (output, SavedTensors(entries: entries, totalBytes: total))
}
