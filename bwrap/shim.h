// Descriptors the launcher (launch.go) hands to the shim: bwrap's info
// descriptor, and the highest one the shim keeps for bwrap. shim.go checks
// at compile time that launch.go agrees.
#define SHIM_INFO_FD 3
#define SHIM_LAST_FD 6
