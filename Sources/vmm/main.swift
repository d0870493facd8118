print("vmm")
