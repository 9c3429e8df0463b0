/// The release of matd, matctl and mat-ims. This is the one place the version is written:
/// each executable's `--version` prints it, and `Tools/package` reads it back from the
/// built `matd --version` to name the Debian package, so the two cannot disagree.
public enum MATVersion {
    /// A Debian-compatible version string (digits and dots, e.g. `0.1.0`).
    public static let current = "0.1.0"
}
