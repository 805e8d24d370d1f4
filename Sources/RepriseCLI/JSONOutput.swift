import ArgumentParser
import Foundation
import Reprise

/// Prints `value` as one line of JSON with sorted keys.
func printJSON<T: Encodable>(_ value: T) throws {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
  print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// One region of a checkpoint plan as `reprise plan --json` prints it and `--plan FILE` reads it.
struct PlanRegionJSON: Codable {
  var first: String
  var last: String?
  var savedNames: [String]?
  var savedOperations: [String]?

  init(_ region: CheckpointPlan.Region) {
    (first, last) = (region.first, region.last)
    (savedNames, savedOperations) = (region.policy.savedNames.sorted(), region.policy.savedOperations.sorted())
  }

  var region: CheckpointPlan.Region {
    CheckpointPlan.Region(
      first: first, last: last,
      policy: CheckpointPolicy(savedNames: Set(savedNames ?? []), savedOperations: Set(savedOperations ?? [])))
  }
}

/// What `reprise plan --json` prints.
struct PlannedJSON: Codable {
  var model: String
  var batchSize: Int
  var threads: Int
  var budgetBytes: Int
  var plan: [PlanRegionJSON]
  var predictedPeakBytes: Int
  var peakBytes: Int
  var stepSecondsMedian: Double
  var minimumPeakBytes: Int
  var plainPeakBytes: Int

  init(_ r: CheckpointPlanner.Result, model: String, batchSize: Int) {
    (self.model, self.batchSize, threads, budgetBytes) = (model, batchSize, Parallel.threadCount, r.budgetBytes)
    plan = r.plan.regions.map(PlanRegionJSON.init)
    (predictedPeakBytes, peakBytes, stepSecondsMedian) = (r.predictedPeakBytes, r.peakBytes, r.stepSecondsMedian)
    (minimumPeakBytes, plainPeakBytes) = (r.minimumPeakBytes, r.plainPeakBytes)
  }
}

/// The plan in a JSON file: an object with a `plan` array (what `reprise plan --json` prints) or the
/// array itself, each region an object with `first`, optionally `last`, `savedNames` and
/// `savedOperations`.
func readPlan(_ path: String) throws -> CheckpointPlan {
  guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("--plan: cannot read \(path)") }
  struct Wrapped: Decodable { var plan: [PlanRegionJSON] }
  let decoder = JSONDecoder()
  let regions: [PlanRegionJSON]
  if let wrapped = try? decoder.decode(Wrapped.self, from: data) {
    regions = wrapped.plan
  } else {
    do { regions = try decoder.decode([PlanRegionJSON].self, from: data) } catch {
      throw ValidationError("--plan: \(path) holds neither a plan array nor an object with one under \"plan\" (each region needs a \"first\" unit path; \"last\", \"savedNames\" and \"savedOperations\" are optional)")
    }
  }
  return CheckpointPlan(regions: regions.map(\.region))
}
