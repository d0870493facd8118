// The timer protection domain (Microkit platform): one hardware timer, the EL1 physical timer whose PPI
// 30 can belong to only one PD, shared by every VMM PD. Each VMM asks for a wake-up at an absolute
// counter value by a protected procedure call; the timer PD keeps one deadline per VMM, arms the
// hardware at the earliest, and when it fires notifies every VMM whose deadline has passed. This file
// owns the contract (MicrokitTimerLayout: kind, priority, channels, labels) and the decisions
// (TimerMultiplexer); the driver program (Platforms/microkit/driver) reads the counter, programs
// CNTP_CVAL_EL0/CNTP_CTL_EL0 and sends the notifications. Requests come from other PDs: a client
// number, a label or a message count that is not the contract's is refused, never trusted.

/// How a VMM PD and the timer PD meet: built apart by the generated system description, the VMM
/// program and the driver program, which take every number from here.
public enum MicrokitTimerLayout {
    /// The timer PD is the driver program linked with `driver_kind` = 4 (after DriverKind's values).
    public static let kind: UInt = 4
    /// Above every VMM PD (253): a VMM's protected procedure call may only go to a higher priority.
    public static let priority: UInt8 = 254
    /// A VMM PD's channel to the timer PD (the one it used for PPI 30 when it owned the timer).
    public static let vmmChannel: UInt32 = MicrokitDriverLayout.timerChannel
    /// The timer PD's channel to VM `vm`'s VMM PD, for `vm` in 0..<maxClients: the VMM's calls arrive
    /// on it and its wake-ups leave on it.
    public static func clientChannel(_ vm: Int) -> UInt32 { UInt32(vm) }
    /// The VMM PD on channel `channel` of the timer PD, or nil for a channel no client has.
    public static func client(onChannel channel: UInt32) -> Int? {
        channel < UInt32(maxClients) ? Int(channel) : nil
    }
    public static let maxClients = 32
    /// The timer PD's channel for PPI 30 (Microkit's last channel id, 61, clear of the clients').
    public static let interruptChannel: UInt32 = 61
    public static let interrupt: UInt32 = MicrokitDriverLayout.timerInterrupt

    /// The protected procedure call: label `setDeadlineLabel`, one message register, MR0 the absolute
    /// deadline in CNTPCT_EL0 ticks (`noDeadline`: wake me never). The reply carries no message
    /// registers; its label is `replyOK`, or `replyBadRequest` for anything else (the deadline is
    /// then unchanged).
    public static let setDeadlineLabel: UInt64 = 1
    public static let setDeadlineCount: UInt64 = 1
    public static let noDeadline: UInt64 = 0
    public static let replyOK: UInt64 = 0
    public static let replyBadRequest: UInt64 = 1
}

/// One deadline per client and what the hardware timer should do about them. A deadline already passed
/// (0 included) is due at the next `expire`; the timer armed at it fires at once.
public struct TimerMultiplexer: Equatable, Sendable {
    var deadlines: [UInt64?]

    /// `clients` clients (none for a negative count), none waiting.
    public init(clients: Int) {
        deadlines = Array(repeating: nil, count: max(clients, 0))
    }

    public var clients: Int { deadlines.count }

    /// Client `client`'s deadline, nil when it waits for nothing or does not exist.
    public func deadline(of client: Int) -> UInt64? {
        deadlines.indices.contains(client) ? deadlines[client] : nil
    }

    /// Replaces client `client`'s deadline (nil cancels it). False, and nothing changed, for a client
    /// out of range.
    public mutating func set(client: Int, deadline: UInt64?) -> Bool {
        guard deadlines.indices.contains(client) else { return false }
        deadlines[client] = deadline
        return true
    }

    /// Where to arm the hardware timer: the earliest deadline of all clients; nil: disarm it.
    public var earliest: UInt64? {
        var earliest: UInt64? = nil
        for case let deadline? in deadlines { earliest = min(earliest ?? deadline, deadline) }
        return earliest
    }

    /// The clients whose deadline is at or before `now`, in client order; their deadlines are cleared,
    /// the others' kept.
    public mutating func expire(now: UInt64) -> [Int] {
        var due: [Int] = []
        for client in deadlines.indices {
            if let deadline = deadlines[client], deadline <= now {
                due.append(client)
                deadlines[client] = nil
            }
        }
        return due
    }

    /// A VMM's protected procedure call on the timer PD's channel `channel`, its message's label, its
    /// count of message registers and MR0. Returns the reply's label (MicrokitTimerLayout): a call
    /// with another label or count, or on a channel that is no client's, changes nothing.
    public mutating func protectedCall(channel: UInt32, label: UInt64, count: UInt64, message: UInt64) -> UInt64 {
        guard label == MicrokitTimerLayout.setDeadlineLabel, count == MicrokitTimerLayout.setDeadlineCount,
              let client = MicrokitTimerLayout.client(onChannel: channel), client < clients else {
            return MicrokitTimerLayout.replyBadRequest
        }
        _ = set(client: client, deadline: message == MicrokitTimerLayout.noDeadline ? nil : message)
        return MicrokitTimerLayout.replyOK
    }
}
