// Readable names for the partition types people meet; anything else shows as its GUID or type byte.
const gptTypes: Record<string, string> = {
  'C12A7328-F81F-11D2-BA4B-00A0C93EC93B': 'EFI System',
  '21686148-6449-6E6F-744E-656564454649': 'BIOS boot',
  '0FC63DAF-8483-4772-8E79-3D69D8477DE4': 'Linux filesystem',
  '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709': 'Linux root (x86-64)',
  '933AC7E1-2EB4-4F13-B844-0E14E2AEF915': 'Linux home',
  '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F': 'Linux swap',
  'E6D6D379-F507-44C2-A23C-238F2A3DF928': 'Linux LVM',
  'A19D880F-05FC-4D3B-A006-743F0F84911E': 'Linux RAID',
  'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7': 'Microsoft basic data',
  'E3C9E316-0B5C-4DB8-817D-F92DF00215AE': 'Microsoft reserved',
  'DE94BBA4-06D1-4D40-A16A-BFD50179D6AC': 'Windows recovery',
  '48465300-0000-11AA-AA11-00306543ECAC': 'Apple HFS+',
  '7C3457EF-0000-11AA-AA11-00306543ECAC': 'Apple APFS',
};

const mbrTypes: Record<string, string> = {
  '0x01': 'FAT12',
  '0x04': 'FAT16 <32M',
  '0x06': 'FAT16',
  '0x07': 'HPFS/NTFS/exFAT',
  '0x0b': 'W95 FAT32',
  '0x0c': 'W95 FAT32 (LBA)',
  '0x0e': 'W95 FAT16 (LBA)',
  '0x27': 'Windows recovery',
  '0x82': 'Linux swap',
  '0x83': 'Linux',
  '0x8e': 'Linux LVM',
  '0xa5': 'FreeBSD',
  '0xaf': 'Apple HFS/HFS+',
  '0xef': 'EFI System',
  '0xfd': 'Linux RAID autodetect',
};

export function partitionTypeName(type: string): string | undefined {
  return gptTypes[type] ?? mbrTypes[type];
}
