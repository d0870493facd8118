// Tests of the timer PD's decisions (TimerServer.swift): the earliest deadline over several VMMs, a
// deadline replaced or cancelled, expiry that wakes only the VMMs that are due, and VMMs that break the
// contract (a client out of range, another label, a missing message register), which change nothing.

import XCTest
@testable import VMMCore

final class TimerServerTests: XCTestCase {

    func testANewMultiplexerWaitsForNothing() {
        var timers = TimerMultiplexer(clients: 4)
        XCTAssertEqual(timers.clients, 4)
        XCTAssertNil(timers.earliest, "disarmed")
        XCTAssertEqual(timers.expire(now: UInt64.max), [])
        XCTAssertEqual(TimerMultiplexer(clients: -3).clients, 0)
        XCTAssertEqual(TimerMultiplexer(clients: MicrokitTimerLayout.maxClients).clients, 32)
    }

    func testTheHardwareIsArmedAtTheEarliestDeadlineOfAllClients() {
        var timers = TimerMultiplexer(clients: 4)
        XCTAssertTrue(timers.set(client: 2, deadline: 900))
        XCTAssertEqual(timers.earliest, 900)
        XCTAssertTrue(timers.set(client: 0, deadline: 1500))
        XCTAssertEqual(timers.earliest, 900, "a later deadline leaves the earliest alone")
        XCTAssertTrue(timers.set(client: 3, deadline: 300))
        XCTAssertEqual(timers.earliest, 300, "the last client counts too")
        XCTAssertTrue(timers.set(client: 1, deadline: 301))
        XCTAssertEqual(timers.earliest, 300)
        XCTAssertEqual([0, 1, 2, 3].map { timers.deadline(of: $0) }, [1500, 301, 900, 300])
    }

    func testADeadlineIsReplacedOrCancelled() {
        var timers = TimerMultiplexer(clients: 3)
        XCTAssertTrue(timers.set(client: 0, deadline: 100))
        XCTAssertTrue(timers.set(client: 1, deadline: 500))
        XCTAssertTrue(timers.set(client: 0, deadline: 700))
        XCTAssertEqual(timers.earliest, 500, "the replaced deadline 100 is gone")
        XCTAssertTrue(timers.set(client: 0, deadline: 50))
        XCTAssertEqual(timers.earliest, 50, "a replacement may be earlier too")
        XCTAssertTrue(timers.set(client: 0, deadline: nil))
        XCTAssertEqual(timers.earliest, 500)
        XCTAssertTrue(timers.set(client: 1, deadline: nil))
        XCTAssertNil(timers.earliest, "nobody waits: disarm")
        XCTAssertTrue(timers.set(client: 1, deadline: nil), "cancelling twice is harmless")
        XCTAssertEqual(timers.expire(now: UInt64.max), [])
    }

    func testExpiryWakesOnlyTheDueClientsInOrderAndKeepsTheOthers() {
        var timers = TimerMultiplexer(clients: 5)
        XCTAssertTrue(timers.set(client: 4, deadline: 200))
        XCTAssertTrue(timers.set(client: 1, deadline: 100))
        XCTAssertTrue(timers.set(client: 2, deadline: 201))
        XCTAssertTrue(timers.set(client: 3, deadline: 1000))
        XCTAssertEqual(timers.expire(now: 99), [], "early: nobody is due")
        XCTAssertEqual(timers.earliest, 100)
        XCTAssertEqual(timers.expire(now: 200), [1, 4], "at or before now, in client order")
        XCTAssertNil(timers.deadline(of: 1))
        XCTAssertNil(timers.deadline(of: 4))
        XCTAssertEqual(timers.deadline(of: 2), 201)
        XCTAssertEqual(timers.deadline(of: 3), 1000)
        XCTAssertEqual(timers.earliest, 201, "re-armed at the next deadline")
        XCTAssertEqual(timers.expire(now: 200), [], "a woken client is not woken again")
        XCTAssertEqual(timers.expire(now: 5000), [2, 3])
        XCTAssertNil(timers.earliest)
    }

    func testClientsOutOfRangeChangeNothing() {
        var timers = TimerMultiplexer(clients: 2)
        XCTAssertTrue(timers.set(client: 1, deadline: 40))
        let before = timers
        XCTAssertFalse(timers.set(client: 2, deadline: 10))
        XCTAssertFalse(timers.set(client: -1, deadline: 10))
        XCTAssertFalse(timers.set(client: Int.max, deadline: nil))
        XCTAssertFalse(timers.set(client: Int.min, deadline: 0))
        XCTAssertEqual(timers, before)
        XCTAssertNil(timers.deadline(of: 2))
        XCTAssertNil(timers.deadline(of: -1))
        XCTAssertEqual(timers.earliest, 40)
        var none = TimerMultiplexer(clients: 0)
        XCTAssertFalse(none.set(client: 0, deadline: 1))
        XCTAssertNil(none.earliest)
    }

    func testDeadlineZeroIsDueAtOnceAndTheLastTickIsDueOnlyAtTheLastTick() {
        var timers = TimerMultiplexer(clients: 3)
        XCTAssertTrue(timers.set(client: 0, deadline: UInt64.max))
        XCTAssertEqual(timers.earliest, UInt64.max)
        XCTAssertEqual(timers.expire(now: UInt64.max - 1), [])
        XCTAssertTrue(timers.set(client: 2, deadline: 0))
        XCTAssertEqual(timers.earliest, 0, "a deadline in the past arms the timer to fire at once")
        XCTAssertEqual(timers.expire(now: 0), [2])
        XCTAssertEqual(timers.earliest, UInt64.max)
        XCTAssertEqual(timers.expire(now: UInt64.max), [0])
        XCTAssertNil(timers.earliest)
    }

    // MARK: The protected procedure call

    func testACallSetsOrCancelsTheCallersDeadline() {
        var timers = TimerMultiplexer(clients: MicrokitTimerLayout.maxClients)
        let set = MicrokitTimerLayout.setDeadlineLabel
        XCTAssertEqual(timers.protectedCall(channel: MicrokitTimerLayout.clientChannel(3), label: set, count: 1,
                                            message: 12345), MicrokitTimerLayout.replyOK)
        XCTAssertEqual(timers.deadline(of: 3), 12345, "the client is the channel the call came on")
        XCTAssertEqual(timers.protectedCall(channel: MicrokitTimerLayout.clientChannel(31), label: set, count: 1,
                                            message: 99), MicrokitTimerLayout.replyOK)
        XCTAssertEqual(timers.earliest, 99)
        XCTAssertEqual(timers.protectedCall(channel: 31, label: set, count: 1, message: MicrokitTimerLayout.noDeadline),
                       MicrokitTimerLayout.replyOK)
        XCTAssertNil(timers.deadline(of: 31), "MR0 = 0: no deadline, not a deadline in the past")
        XCTAssertEqual(timers.earliest, 12345)
    }

    func testBadCallsAreRefusedAndChangeNothing() {
        var timers = TimerMultiplexer(clients: MicrokitTimerLayout.maxClients)
        _ = timers.set(client: 0, deadline: 500)
        let before = timers
        let set = MicrokitTimerLayout.setDeadlineLabel, bad = MicrokitTimerLayout.replyBadRequest
        XCTAssertEqual(timers.protectedCall(channel: 0, label: 0, count: 1, message: 7), bad, "unknown label")
        XCTAssertEqual(timers.protectedCall(channel: 0, label: 2, count: 1, message: 7), bad)
        XCTAssertEqual(timers.protectedCall(channel: 0, label: UInt64.max, count: 1, message: 7), bad)
        XCTAssertEqual(timers.protectedCall(channel: 0, label: set, count: 0, message: 7), bad, "MR0 not sent")
        XCTAssertEqual(timers.protectedCall(channel: 0, label: set, count: 2, message: 7), bad)
        XCTAssertEqual(timers.protectedCall(channel: 32, label: set, count: 1, message: 7), bad, "no client 32")
        XCTAssertEqual(timers.protectedCall(channel: MicrokitTimerLayout.interruptChannel, label: set, count: 1,
                                            message: 7), bad)
        XCTAssertEqual(timers.protectedCall(channel: UInt32.max, label: set, count: 1, message: 7), bad)
        XCTAssertEqual(timers, before)
        var small = TimerMultiplexer(clients: 2)
        XCTAssertEqual(small.protectedCall(channel: 2, label: set, count: 1, message: 7), bad,
                       "a channel of the layout beyond this multiplexer's clients")
        XCTAssertNil(small.earliest)
    }

    func testTheLayoutKeepsTheClientsInterruptAndDriversApart() {
        XCTAssertEqual(MicrokitTimerLayout.kind, 4)
        XCTAssertNil(DriverKind(rawValue: UInt32(MicrokitTimerLayout.kind)), "not a device driver's kind")
        XCTAssertGreaterThan(MicrokitTimerLayout.priority, 253, "above every VMM PD")
        XCTAssertEqual(MicrokitTimerLayout.vmmChannel, MicrokitDriverLayout.timerChannel)
        XCTAssertEqual(MicrokitTimerLayout.interrupt, 30)
        let clientChannels = (0..<MicrokitTimerLayout.maxClients).map(MicrokitTimerLayout.clientChannel)
        XCTAssertEqual(Set(clientChannels).count, MicrokitTimerLayout.maxClients)
        XCTAssertFalse(clientChannels.contains(MicrokitTimerLayout.interruptChannel))
        XCTAssertLessThanOrEqual(MicrokitTimerLayout.interruptChannel, 61, "Microkit's channel ids are 0-61")
        for vm in 0..<MicrokitTimerLayout.maxClients {
            XCTAssertEqual(MicrokitTimerLayout.client(onChannel: MicrokitTimerLayout.clientChannel(vm)), vm)
        }
        XCTAssertNil(MicrokitTimerLayout.client(onChannel: MicrokitTimerLayout.interruptChannel))
    }
}
