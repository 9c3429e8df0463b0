// MATLinux is the Linux side built on MATSystem's typed system calls: its users get both.
@_exported import MATSystem
