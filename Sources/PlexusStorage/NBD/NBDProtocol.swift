// The constants of the NBD protocol (the newstyle fixed handshake and the transmission phase
// with simple replies), as the protocol document of the NetworkBlockDevice project
// (doc/proto.md) defines them. Everything on the wire is big-endian.

/// NBD protocol constants.
public enum NBDProtocol {
    // MARK: Handshake
    /// "NBDMAGIC", the first 8 bytes the server sends.
    public static let initMagic: UInt64 = 0x4E42_444D_4147_4943
    /// "IHAVEOPT": after the init magic, and before every option the client sends.
    public static let optionMagic: UInt64 = 0x4948_4156_454F_5054
    /// The magic of every option reply.
    public static let optionReplyMagic: UInt64 = 0x0003_E889_0455_65A9

    /// Handshake flags (server): fixed newstyle, and no 124 zero bytes after NBD_OPT_EXPORT_NAME.
    public static let flagFixedNewstyle: UInt16 = 1 << 0
    public static let flagNoZeroes: UInt16 = 1 << 1
    /// Client flags: the same two, as the client accepts them.
    public static let clientFixedNewstyle: UInt32 = 1 << 0
    public static let clientNoZeroes: UInt32 = 1 << 1

    /// Options.
    public static let optExportName: UInt32 = 1
    public static let optAbort: UInt32 = 2
    public static let optList: UInt32 = 3
    public static let optStartTLS: UInt32 = 5
    public static let optInfo: UInt32 = 6
    public static let optGo: UInt32 = 7
    public static let optStructuredReply: UInt32 = 8

    /// Option reply types.
    public static let repAck: UInt32 = 1
    public static let repServer: UInt32 = 2
    public static let repInfo: UInt32 = 3
    public static let repErrUnsupported: UInt32 = 0x8000_0001
    public static let repErrPolicy: UInt32 = 0x8000_0002
    public static let repErrInvalid: UInt32 = 0x8000_0003
    public static let repErrUnknown: UInt32 = 0x8000_0006
    public static let repErrShutdown: UInt32 = 0x8000_0007

    /// Information types of NBD_REP_INFO.
    public static let infoExport: UInt16 = 0
    public static let infoName: UInt16 = 1
    public static let infoDescription: UInt16 = 2
    public static let infoBlockSize: UInt16 = 3

    // MARK: Transmission
    /// Transmission flags.
    public static let flagHasFlags: UInt16 = 1 << 0
    public static let flagReadOnly: UInt16 = 1 << 1
    public static let flagSendFlush: UInt16 = 1 << 2
    public static let flagSendFUA: UInt16 = 1 << 3
    public static let flagSendTrim: UInt16 = 1 << 5
    public static let flagCanMultiConnection: UInt16 = 1 << 8

    public static let requestMagic: UInt32 = 0x2560_9513
    public static let simpleReplyMagic: UInt32 = 0x6744_6698
    /// A request header: magic, flags, type, handle, offset, length.
    public static let requestSize = 28
    /// A simple reply header: magic, error, handle.
    public static let replySize = 16

    /// Commands.
    public static let cmdRead: UInt16 = 0
    public static let cmdWrite: UInt16 = 1
    public static let cmdDisconnect: UInt16 = 2
    public static let cmdFlush: UInt16 = 3
    public static let cmdTrim: UInt16 = 4
    /// Command flags.
    public static let cmdFlagFUA: UInt16 = 1 << 0

    /// Errors of a simple reply.
    public static let errPerm: UInt32 = 1
    public static let errIO: UInt32 = 5
    public static let errInvalid: UInt32 = 22
    public static let errNoSpace: UInt32 = 28
    public static let errShutdown: UInt32 = 108

    /// The longest export name (or other string) the protocol allows.
    public static let maxString = 4096
}
