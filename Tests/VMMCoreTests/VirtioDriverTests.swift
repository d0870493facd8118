// Tests of VirtioMMIODriver: probing, the §3.1.1 initialisation sequence as register writes, feature
// negotiation and its refusals, queue setup (§4.2.3.2), configuration reads, notify and interrupts.

import XCTest
@testable import VMMCore

final class VirtioDriverTests: XCTestCase {
    typealias Driver = VirtioMMIODriver<BoardVirtioFake>
    let memory = BoardTestMemory()

    func blockFake(features: UInt64 = VirtioFeature.version1) -> BoardVirtioFake {
        let fake = BoardVirtioFake(deviceID: 2, features: features, queueCount: 1)
        fake.memory = memory
        return fake
    }

    func testProbeNamesTheDeviceTypeOfAModernTransport() {
        XCTAssertEqual(Driver.probe(BoardVirtioFake(deviceID: 2, features: 0)), .block)
        XCTAssertEqual(Driver.probe(BoardVirtioFake(deviceID: 1, features: 0)), .network)
        XCTAssertEqual(Driver.probe(BoardVirtioFake(deviceID: 3, features: 0)), .console)
    }

    func testProbeRejectsEmptySlotsLegacyTransportsBadMagicAndUnknownTypes() {
        XCTAssertNil(Driver.probe(BoardVirtioFake(deviceID: 0, features: 0)))     // empty slot: DeviceID 0
        let legacy = BoardVirtioFake(deviceID: 2, features: 0)
        legacy.version = 1
        XCTAssertNil(Driver.probe(legacy))
        let notVirtio = BoardVirtioFake(deviceID: 2, features: 0)
        notVirtio.magic = 0
        XCTAssertNil(Driver.probe(notVirtio))
        XCTAssertNil(Driver.probe(BoardVirtioFake(deviceID: 4, features: 0)))     // entropy: not driven here
    }

    func testInitialisationWritesTheSequenceOfSection3_1_1() throws {
        let fake = blockFake(features: VirtioFeature.version1 | 1 << 5)
        var dma = memory.dma
        let driver = try Driver(registers: fake, expecting: .block, wantedFeatures: 1 << 5,
                                queueSizes: [128], dma: &dma)
        // Descriptor table at the region's start (16-aligned, 16·128 bytes), available ring after it
        // (6 + 2·128 = 262 bytes), used ring at the next multiple of 4.
        XCTAssertEqual(fake.writes, [
            .write(0x070, 0),                                          // reset
            .write(0x070, 1), .write(0x070, 3),                        // ACKNOWLEDGE, DRIVER
            .write(0x014, 0), .write(0x014, 1),                        // read both feature words
            .write(0x024, 0), .write(0x020, 1 << 5), .write(0x024, 1), .write(0x020, 1),   // VERSION_1 is bit 32
            .write(0x070, 11),                                         // FEATURES_OK
            .write(0x030, 0), .write(0x038, 128),
            .write(0x080, 0x4800_0000), .write(0x084, 0),
            .write(0x090, 0x4800_0800), .write(0x094, 0),
            .write(0x0a0, 0x4800_0908), .write(0x0a4, 0),
            .write(0x044, 1),
            .write(0x070, 15),                                         // DRIVER_OK
        ])
        XCTAssertEqual(driver.negotiatedFeatures, VirtioFeature.version1 | 1 << 5)
        XCTAssertEqual(dma.used, 0x908 + 6 + 8 * 128)
        // The rings were zeroed although the memory held 0xa5.
        XCTAssertEqual(memory.dmaHost.load(fromByteOffset: 0x802, as: UInt16.self), 0)
    }

    func testLegacyDeviceIsRefusedWithoutAnyRegisterWrite() {
        let fake = blockFake()
        fake.version = 1
        var dma = memory.dma
        XCTAssertThrowsError(try Driver(registers: fake, expecting: .block, wantedFeatures: 0,
                                        queueSizes: [8], dma: &dma)) { error in
            XCTAssertEqual(error as? VirtioDriverError, .legacyDevice)
        }
        XCTAssertEqual(fake.writes, [])
    }

    func testEmptySlotAndWrongTypeAreRefusedWithoutAnyRegisterWrite() {
        var dma = memory.dma
        let empty = blockFake()
        empty.deviceID = 0
        XCTAssertThrowsError(try Driver(registers: empty, expecting: .block, wantedFeatures: 0,
                                        queueSizes: [8], dma: &dma)) { error in
            XCTAssertEqual(error as? VirtioDriverError, .noDevice)
        }
        let network = blockFake()
        network.deviceID = 1
        XCTAssertThrowsError(try Driver(registers: network, expecting: .block, wantedFeatures: 0,
                                        queueSizes: [8], dma: &dma)) { error in
            XCTAssertEqual(error as? VirtioDriverError, .wrongDeviceType)
        }
        XCTAssertEqual(empty.writes + network.writes, [])
    }

    func testDeviceWithoutVersion1IsRefusedAndMarkedFailed() {
        let fake = blockFake(features: 1 << 5)
        var dma = memory.dma
        XCTAssertThrowsError(try Driver(registers: fake, expecting: .block, wantedFeatures: 1 << 5,
                                        queueSizes: [8], dma: &dma)) { error in
            XCTAssertEqual(error as? VirtioDriverError, .featuresRefused)
        }
        XCTAssertEqual(fake.statusWrites, [0, 1, 3, 3 | VirtioStatus.failed])
        XCTAssertEqual(dma.used, 0)
    }

    func testFeaturesOKThatDoesNotStickIsRefusedAndNoQueueIsSetUp() {
        let fake = blockFake()
        fake.refusesFeatures = true
        var dma = memory.dma
        XCTAssertThrowsError(try Driver(registers: fake, expecting: .block, wantedFeatures: 0,
                                        queueSizes: [8], dma: &dma)) { error in
            XCTAssertEqual(error as? VirtioDriverError, .featuresRefused)
        }
        XCTAssertEqual(fake.statusWrites.last, 3 | VirtioStatus.failed)
        XCTAssertFalse(fake.writes.contains(.write(0x044, 1)))
        XCTAssertEqual(dma.used, 0)
    }

    func testDriverAcceptsOnlyWantedOfferedFeaturesAndNoRingFeatures() throws {
        let offered = VirtioFeature.version1 | VirtioFeature.ringEventIndex | VirtioFeature.ringIndirectDescriptors
            | 1 << 5 | 1 << 9
        let fake = blockFake(features: offered)
        var dma = memory.dma
        let driver = try Driver(registers: fake, expecting: .block,
                                wantedFeatures: 1 << 5 | 1 << 7 | VirtioFeature.ringEventIndex,
                                queueSizes: [8], dma: &dma)
        XCTAssertEqual(fake.driverFeatures, VirtioFeature.version1 | 1 << 5)
        XCTAssertEqual(driver.negotiatedFeatures, VirtioFeature.version1 | 1 << 5)
        XCTAssertTrue(driver.has(1 << 5))
        XCTAssertFalse(driver.has(1 << 9))
    }

    func testQueueSizeIsTheLargestPowerOfTwoWithinRequestAndMaximum() throws {
        let fake = BoardVirtioFake(deviceID: 1, features: VirtioFeature.version1)
        fake.queues[0].maximum = 100
        fake.queues[1].maximum = 1024
        var dma = memory.dma
        let driver = try Driver(registers: fake, expecting: .network, wantedFeatures: 0,
                                queueSizes: [256, 200], dma: &dma)
        XCTAssertEqual(driver.queues.map(\.size), [64, 128])
        XCTAssertEqual(fake.queues.map(\.size), [64, 128])
        XCTAssertEqual(fake.queues.map(\.ready), [1, 1])
    }

    func testQueueWithZeroMaximumOrAlreadyLiveIsUnavailable() {
        let missing = blockFake()
        missing.queues[0].maximum = 0
        var dma = memory.dma
        XCTAssertThrowsError(try Driver(registers: missing, expecting: .block, wantedFeatures: 0,
                                        queueSizes: [8], dma: &dma)) { error in
            XCTAssertEqual(error as? VirtioDriverError, .queueUnavailable)
        }
        XCTAssertEqual(missing.statusWrites.last, 11 | VirtioStatus.failed)

        // A device that kept queue 1 live across the reset (§4.2.3.2 step 2: QueueReady must read 0).
        let live = BoardVirtioFake(deviceID: 2, features: VirtioFeature.version1, queueCount: 2)
        live.keepsQueuesOnReset = true
        live.queues[1].ready = 1
        XCTAssertThrowsError(try Driver(registers: live, expecting: .block, wantedFeatures: 0,
                                        queueSizes: [8, 8], dma: &dma)) { error in
            XCTAssertEqual(error as? VirtioDriverError, .queueUnavailable)
        }
        XCTAssertEqual(live.queues[0].ready, 1, "queue 0 was set up before queue 1 failed")
        XCTAssertEqual(dma.used, 0, "the rings of the queues set up before the failure are given back")
    }

    func testQueueTheDeviceDoesNotHaveIsUnavailable() {
        let fake = blockFake()
        var dma = memory.dma
        XCTAssertThrowsError(try Driver(registers: fake, expecting: .block, wantedFeatures: 0,
                                        queueSizes: [8, 8], dma: &dma)) { error in
            XCTAssertEqual(error as? VirtioDriverError, .queueUnavailable)   // a block device has one queue
        }
    }

    func testTooLittleDMAMemoryIsReportedAndLeavesTheRegionUnchanged() {
        let fake = blockFake()
        var dma = DMARegion(host: memory.dmaHost, physical: BoardTestMemory.dmaPhysical, size: 1024)
        XCTAssertThrowsError(try Driver(registers: fake, expecting: .block, wantedFeatures: 0,
                                        queueSizes: [256], dma: &dma)) { error in
            XCTAssertEqual(error as? VirtioDriverError, .outOfDMAMemory)
        }
        XCTAssertEqual(dma.used, 0)
    }

    func testDeviceNeedingResetAfterDriverOKIsDeviceFailed() {
        let fake = blockFake()
        fake.statusAfterDriverOK = VirtioStatus.deviceNeedsReset
        var dma = memory.dma
        XCTAssertThrowsError(try Driver(registers: fake, expecting: .block, wantedFeatures: 0,
                                        queueSizes: [8], dma: &dma)) { error in
            XCTAssertEqual(error as? VirtioDriverError, .deviceFailed)
        }
    }

    func testDeviceThatNeverFinishesResetIsDeviceFailed() {
        let fake = blockFake()
        fake.neverResets = true
        var dma = memory.dma
        XCTAssertThrowsError(try Driver(registers: fake, expecting: .block, wantedFeatures: 0,
                                        queueSizes: [8], dma: &dma)) { error in
            XCTAssertEqual(error as? VirtioDriverError, .deviceFailed)
        }
    }

    func testConfigurationFieldsAreReadAtTheirOwnWidth() throws {
        let fake = blockFake()
        fake.config = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99]   // 9 bytes: a 32-bit read at 8 would fail
        var dma = memory.dma
        let driver = try Driver(registers: fake, expecting: .block, wantedFeatures: 0, queueSizes: [8], dma: &dma)
        XCTAssertEqual(driver.configRead8(8), 0x99)
        XCTAssertEqual(driver.configRead16(2), 0x4433)
        XCTAssertEqual(driver.configRead32(4), 0x8877_6655)
        XCTAssertEqual(driver.configRead64(0), 0x8877_6655_4433_2211)
    }

    func testConfigRead64RetriesWhenTheGenerationChanges() throws {
        let fake = blockFake()
        fake.config = [1, 0, 0, 0, 0, 0, 0, 0]
        var dma = memory.dma
        let driver = try Driver(registers: fake, expecting: .block, wantedFeatures: 0, queueSizes: [8], dma: &dma)
        fake.generationChangesOnConfigRead = 1
        let generationBefore = fake.configGeneration
        XCTAssertEqual(driver.configRead64(0), 1)
        XCTAssertEqual(fake.configGeneration, generationBefore + 1)
        XCTAssertEqual(fake.generationChangesOnConfigRead, 0)
    }

    func testNotifyWritesTheQueueIndexAfterABarrier() throws {
        let fake = BoardVirtioFake(deviceID: 1, features: VirtioFeature.version1)
        fake.memory = memory
        var dma = memory.dma
        let driver = try Driver(registers: fake, expecting: .network, wantedFeatures: 0,
                                queueSizes: [8, 8], dma: &dma)
        fake.events = []
        driver.notify(queue: 1)
        XCTAssertEqual(fake.events, [.barrier, .write(0x050, 1)])
    }

    func testAcknowledgeInterruptReturnsAndClearsThePendingBits() throws {
        let fake = blockFake()
        var dma = memory.dma
        let driver = try Driver(registers: fake, expecting: .block, wantedFeatures: 0, queueSizes: [8], dma: &dma)
        fake.interruptStatus = 3
        fake.events = []
        XCTAssertEqual(driver.acknowledgeInterrupt(), 3)
        XCTAssertEqual(fake.events, [.write(0x064, 3)])
        XCTAssertEqual(fake.interruptStatus, 0)
        XCTAssertEqual(driver.acknowledgeInterrupt(), 0)
        XCTAssertEqual(fake.events, [.write(0x064, 3)], "nothing pending: no write")
    }

    func testSubmitAndTakeUsedGoThroughTheDevice() throws {
        let fake = blockFake()
        var dma = memory.dma
        var driver = try Driver(registers: fake, expecting: .block, wantedFeatures: 0, queueSizes: [8], dma: &dma)
        let buffer = DeviceBuffer(physical: BoardTestMemory.guestPhysical, length: 64, deviceWritable: true)
        let head = try XCTUnwrap(driver.submit([buffer], queue: 0))
        XCTAssertNil(driver.submit([buffer], queue: 1), "no such queue")
        XCTAssertNil(driver.takeUsed(queue: 0), "not yet notified")
        fake.behaviour = { _, _, _ in .complete(written: 64) }
        driver.notify(queue: 0)
        let used = try XCTUnwrap(driver.takeUsed(queue: 0))
        XCTAssertEqual(used.head, head)
        XCTAssertEqual(used.length, 64)
        XCTAssertFalse(driver.needsReset)
        driver.reset()
        XCTAssertEqual(fake.statusWrites.last, 0)
    }
}
