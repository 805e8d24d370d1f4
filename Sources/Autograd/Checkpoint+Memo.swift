import TensorModule

/// The state of the innermost checkpoint region running on this thread: its policy, and the values
/// its first pass computed for the replay to read back (optimisation B, rule 10).
final class RegionState {
  let name: String
  let policy: CheckpointPolicy
  let memo: FirstPassMemo
  /// False during the first pass, true during the replay.
  private(set) var isReplaying = false

  init(name: String, policy: CheckpointPolicy) {
    (self.name, self.policy) = (name, policy)
    memo = FirstPassMemo(region: name)
  }

  /// From now on the memo reads back what the first pass kept.
  func startReplay() {
    isReplaying = true
    memo.startReplay()
  }
}

/// Values a region's first pass computed, in call order, for its replay (optimisation B).
///
/// Each is read back once, by the call at the same position in the replay, and then released, so a
/// kept feature map lives only until the replay has used it.
final class FirstPassMemo {
  private let region: String
  private var kept: [(key: String, tensors: [Tensor])] = []
  private var next: Int?

  init(region: String) { self.region = region }

  func startReplay() { next = 0 }

  /// Everything kept now.
  var tensors: [Tensor] { kept.flatMap(\.tensors) }

  /// `compute()` in the first pass, kept; in the replay, what the first pass kept at this position.
  /// A replay that asks for something else stops (rule 6).
  func value(_ key: String, _ compute: () -> [Tensor]) -> [Tensor] {
    guard let i = next else {
      let computed = compute()
      kept.append((key, computed))
      return computed
    }
    guard i < kept.count, kept[i].key == key else {
      fatalError(
        "checkpoint '\(region)': the replay asks for \(key) where the first pass "
          + (i < kept.count ? "kept \(kept[i].key)" : "kept nothing more (\(kept.count) values)")
          + "; the body must be deterministic")
    }
    next = i + 1
    defer { kept[i].tensors = [] }
    return kept[i].tensors
  }
}

/// Returns `compute()`, computed once per step inside a checkpoint region: the region's first pass
/// computes and keeps it, and its replay gets the kept tensors back, in call order, instead of
/// computing them again (optimisation B). Outside a region, and in the first pass of a region
/// nested in another's (which will run as a region of its own in the outer replay), it simply
/// computes.
///
/// For values that are cheap to keep and costly or impossible to recompute identically: the batch
/// statistics of a normalisation (a pass over a feature map), a sample drawn by a side effect.
/// `key` describes the value (with its shape) for the message when a replay asks for a different one.
public func firstPassMemo(_ key: @autoclosure () -> String, _ compute: () -> [Tensor]) -> [Tensor] {
  guard let region = Context.current.region else { return compute() }
  return region.memo.value(key(), compute)
}
