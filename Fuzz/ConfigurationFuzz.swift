// Fuzz target "configuration": the guest configuration blob that `vmm build` links into the image
// and the VMM decodes at start (GuestConfiguration.swift), taken as raw bytes.
//
// A blob that decodes must survive the trip back: encoding it and decoding again gives the same
// configuration and the same bytes. A decoded configuration is valid, so the guest's device tree
// built from it, as GuestBoot does, must not hit one of GuestDeviceTree.build's preconditions.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfiguration(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let configuration = try? GuestConfiguration(decoding: bytes) else { return 0 }

    let encoded = configuration.encoded()
    let again = encoded.withUnsafeBytes { blob in Result { () throws(GuestConfigurationError) in try GuestConfiguration(decoding: blob) } }
    guard case .success(let decoded) = again else { fatalError("re-encoded configuration does not decode") }
    fuzzCheck(decoded == configuration, "configuration changed in an encode/decode round trip")
    fuzzCheck(decoded.encoded() == encoded, "encoding is not stable")

    var board = GuestBoardDescription(ramBase: configuration.ramBase, ramSize: configuration.ramSize,
                                      vcpuCount: configuration.vcpuCount, gicVersion: configuration.gicVersion,
                                      bootargs: configuration.bootargs)
    for device in configuration.placements(blockCapacity: { _ in 2048 }) { board.devices.append(device.deviceTreeEntry) }
    for device in configuration.passthrough { board.devices.append(device.deviceTreeEntry) }
    let dtb = GuestDeviceTree.build(board)
    // The flattened device tree header (Devicetree Specification §5.2): magic, then totalsize.
    fuzzCheck(dtb.count >= 40 && dtb[0] == 0xD0 && dtb[1] == 0x0D && dtb[2] == 0xFE && dtb[3] == 0xED,
              "device tree without the FDT magic")
    let total = dtb[4...7].reduce(0) { $0 << 8 | Int($1) }
    fuzzCheck(total == dtb.count, "FDT totalsize differs from the blob's size")
    return 0
}
