// The board drivers of the documented maximum (8 disks, 4 networks, 4 consoles: vm.block, vm.net and
// vm.console in docs/configuration.md) all fit the DMA memory a platform gives them, with the drivers'
// default queue and buffer sizes, even when every device offers the largest queues virtio allows.

import XCTest
@testable import VMMCore

final class VirtioDriverLimitTests: XCTestCase {
    func device(id: UInt32, features: UInt64, queues: Int, config: [UInt8], memory: BoardTestMemory) -> BoardVirtioFake {
        let fake = BoardVirtioFake(deviceID: id, features: VirtioFeature.version1 | features, queueCount: queues)
        fake.memory = memory
        for n in 0..<queues { fake.queues[n].maximum = 32768 }
        fake.config = config
        fake.behaviour = { _, _, _ in .hold }
        return fake
    }

    func testTheDocumentedMaximumOfBoardDriversFitsTheirDMAMemory() throws {
        let memory = BoardTestMemory(dmaSize: BoardDriverMemory.size)
        var dma = memory.dma
        var blocks: [VirtioBlockDriver<BoardVirtioFake>] = []
        var networks: [VirtioNetDriver<BoardVirtioFake>] = []
        var consoles: [VirtioConsoleDriver<BoardVirtioFake>] = []
        for _ in 0..<8 {
            let fake = device(id: 2, features: VirtioBlockDriverConstant.featureFlush, queues: 1,
                              config: [64] + [UInt8](repeating: 0, count: 23), memory: memory)
            blocks.append(try VirtioBlockDriver(registers: fake, dma: &dma))
        }
        for n in 0..<4 {
            let fake = device(id: 1, features: VirtioNetDriverConstant.featureMAC, queues: 2,
                              config: [0x52, 0x54, 0, 0x12, 0x34, UInt8(0x50 + n), 1, 0], memory: memory)
            networks.append(try VirtioNetDriver(registers: fake, dma: &dma))
        }
        for _ in 0..<4 {
            let fake = device(id: 3, features: 0, queues: 2, config: [], memory: memory)
            consoles.append(try VirtioConsoleDriver(registers: fake, dma: &dma))
        }
        XCTAssertEqual(blocks.count + networks.count + consoles.count, 16)
        XCTAssertTrue(networks.allSatisfy { $0.device.queues.allSatisfy { $0.size == 256 } })
        // Headroom: the maximum takes less than a quarter of the region.
        XCTAssertLessThan(dma.used, BoardDriverMemory.size / 4, "board drivers use \(dma.used) bytes of DMA memory")
    }
}
