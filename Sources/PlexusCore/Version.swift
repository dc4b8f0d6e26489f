/// The version of Plexus: the package's own (`plexus --version`), and the versions of what it
/// puts on the wire, which decide whether two builds can run in one platform.
public enum PlexusVersion {
    /// The package's version.
    public static let package = "0.14.0"
    /// The frame header's version byte (``FrameLayout/version``): nodes of different frame
    /// versions refuse each other's frames.
    public static var frameFormat: UInt8 { FrameLayout.version }
    /// One line for `--version`.
    public static var description: String { "plexus \(package) (frame format \(frameFormat))" }
}
