import ArgumentParser
import Foundation
import Reprise
import RepriseDistributed

/// `--distributed` and its companions: data-parallel training across the processes `mpirun` starts.
struct DistributedOptions: ParsableArguments {
  @Flag(
    help: """
      Train data-parallel on MPI, one process per rank: mpirun -np 2 reprise train --distributed. \
      --batch-size is the global batch, split across the ranks; the results are those of one process \
      normalising each rank's part of the batch separately (or the whole batch with --sync-batch-norm). \
      Every rank reads the data and the --init-weights and --resume files; rank 0 alone prints and writes files.
      """)
  var distributed = false
  @Flag(help: "With --distributed: batch normalisation over the global batch, its statistics summed across the ranks.")
  var syncBatchNorm = false
  @Option(
    help: """
      With --distributed: how the gradient reduction overlaps the backward pass: thread (a communication thread), \
      polling (non-blocking allreduces advanced between operations) or none (default: thread).
      """)
  var gradientOverlap: GradientOverlap?
  @Option(help: "With --distributed: the size of a gradient reduction bucket, such as 256KiB or a number of bytes (default: 1MiB).")
  var bucketSize: String?

  func check() throws {
    let launched = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init) ?? 1
    guard distributed || launched == 1 else {
      throw ValidationError(
        "started by mpirun as one of \(launched) processes without --distributed: each would train alone and write the same files; add --distributed")
    }
    guard distributed || (!syncBatchNorm && gradientOverlap == nil && bucketSize == nil) else {
      throw ValidationError("--sync-batch-norm, --gradient-overlap and --bucket-size need --distributed")
    }
    _ = try bucketBytes()
  }

  /// `--bucket-size` in bytes, when given.
  func bucketBytes() throws -> Int? { try bucketSize.map { try parsedBudget($0, option: "--bucket-size") } }

  /// The data-parallel trainer of `model` these options ask for; what they leave out, DataParallel's defaults.
  func trainer(_ model: any Layer, _ communicator: Communicator) throws -> DataParallel {
    try DataParallel(
      model, communicator: communicator, bucketBytes: try bucketBytes() ?? DataParallel.defaultBucketBytes,
      overlap: gradientOverlap ?? DataParallel.defaultOverlap, synchronizingBatchNorm: syncBatchNorm)
  }

  /// The run's communicator, when distributed.
  func communicator() throws -> Communicator? {
    distributed ? try Communicator.world() : nil
  }
}

extension GradientOverlap: ExpressibleByArgument {}

/// How many processes of the run share this machine (Open MPI says so in its environment).
func localProcessCount(_ communicator: Communicator) -> Int {
  ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? communicator.size
}

/// Rank 0's checkpoint plan, on every process. The planner measures time, so processes could
/// choose different plans, and a process whose plan replays other regions could make other
/// collectives (a nested region's batch statistics) than the rest.
func agreedPlan(_ plan: CheckpointPlan, _ communicator: Communicator?) throws -> CheckpointPlan {
  guard let communicator, communicator.size > 1 else { return plan }
  var bytes = try JSONEncoder().encode(plan.regions.map(PlanRegionJSON.init)).map(Int.init)
  communicator.broadcast(&bytes, from: 0)
  let regions = try JSONDecoder().decode([PlanRegionJSON].self, from: Data(bytes.map { UInt8($0) }))
  return CheckpointPlan(regions: regions.map(\.region))
}
