import ArgumentParser
import Foundation

/// Throws a validation error unless `path`, given with `option`, is a readable file.
func readable(_ option: String, _ path: String) throws {
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw ValidationError("\(option): \(path) does not exist") }
  guard !isDirectory.boolValue else { throw ValidationError("\(option): \(path) is a directory") }
  guard FileManager.default.isReadableFile(atPath: path) else { throw ValidationError("\(option): cannot read \(path)") }
}

/// Throws a validation error unless a file can be written at `path`, given with `option`: checked
/// before any work starts, so that a run is not lost to an output it cannot write at the end.
/// Saves write a temporary file beside the target, so its directory must be writable.
func writable(_ option: String, _ path: String) throws {
  var isDirectory: ObjCBool = false
  let target = URL(fileURLWithPath: path).resolvingSymlinksInPath()
  if FileManager.default.fileExists(atPath: target.path, isDirectory: &isDirectory) {
    guard !isDirectory.boolValue else { throw ValidationError("\(option): \(path) is a directory") }
    guard FileManager.default.isWritableFile(atPath: target.path) else { throw ValidationError("\(option): cannot write \(path)") }
  }
  let directory = target.deletingLastPathComponent().path
  guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
    throw ValidationError("\(option): the directory \(directory) does not exist")
  }
  guard FileManager.default.isWritableFile(atPath: directory) else {
    throw ValidationError("\(option): cannot create files in \(directory)")
  }
}

/// Throws a validation error unless `path`, given with `option`, is a directory that files can be
/// written in, creating it (and its parents) when it does not exist.
func writableDirectory(_ option: String, _ path: String) throws {
  var isDirectory: ObjCBool = false
  if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
    guard isDirectory.boolValue else { throw ValidationError("\(option): \(path) is not a directory") }
  } else {
    do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
      throw ValidationError("\(option): cannot create the directory \(path): \(error.localizedDescription)")
    }
  }
  guard FileManager.default.isWritableFile(atPath: path) else { throw ValidationError("\(option): cannot write in \(path)") }
}
