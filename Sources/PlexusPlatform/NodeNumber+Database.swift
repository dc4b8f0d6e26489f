import GRDB
import PlexusCore

/// A node number in the store is an INTEGER column (`processors.node`, `personalities.node`),
/// as it was when the store kept plain integers: a row reads back as the ``NodeNumber`` it
/// was written from, and a value no node number has (negative, above `UInt32.max`, not an
/// integer) reads as none.
extension NodeNumber: DatabaseValueConvertible {
    public var databaseValue: DatabaseValue { Int64(rawValue).databaseValue }

    public static func fromDatabaseValue(_ dbValue: DatabaseValue) -> NodeNumber? {
        Int64.fromDatabaseValue(dbValue).flatMap { UInt32(exactly: $0) }.map { NodeNumber($0) }
    }
}
