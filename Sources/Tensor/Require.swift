/// Stops the program with `message` unless `condition` holds.
///
/// The checks for programmer errors (shapes that do not fit) use this instead of `precondition`,
/// whose message an optimised build drops: a release build must still say which operation failed
/// and name every shape involved (docs/design.md, "Errors and bad input").
@inline(__always)
package func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
  if !condition() { fatalError(message()) }
}
