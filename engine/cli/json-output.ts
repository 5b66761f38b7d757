// Prints a JSON value piece by piece, as JSON.stringify(value, null, indent) would, without building it as one
// string: a verb's output may hold a list that grows with the disk (the used ranges of a fragmented file system,
// the changed ranges between two points), and one string holds at most 512 Mi characters.

/** Text is handed to `write` in pieces of about this many characters. */
const PIECE_CHARACTERS = 1 << 16;

export function writeJson(value: unknown, write: (text: string) => void, indent = 0): void {
  let piece = '';
  const emit = (text: string) => {
    piece += text;
    if (piece.length >= PIECE_CHARACTERS) {
      write(piece);
      piece = '';
    }
  };
  const newline = (depth: number) => (indent > 0 ? `\n${' '.repeat(indent * depth)}` : '');
  // Recursion follows the value's nesting (a few levels for a verb's output), never the length of a list.
  const visit = (item: unknown, depth: number): void => {
    if (Array.isArray(item)) {
      emit('[');
      for (let i = 0; i < item.length; i++) {
        emit(`${i > 0 ? ',' : ''}${newline(depth + 1)}`);
        const element = item[i];
        // As JSON.stringify: what has no JSON form is null inside a list.
        if (element === undefined || typeof element === 'function' || typeof element === 'symbol')
          emit('null');
        else visit(element, depth + 1);
      }
      emit(item.length > 0 ? `${newline(depth)}]` : ']');
    } else if (item !== null && typeof item === 'object' && !('toJSON' in item) && !isFlat(item)) {
      const entries = Object.entries(item).filter(
        ([, field]) => field !== undefined && typeof field !== 'function' && typeof field !== 'symbol',
      );
      emit('{');
      entries.forEach(([key, field], i) => {
        emit(`${i > 0 ? ',' : ''}${newline(depth + 1)}${JSON.stringify(key)}:${indent > 0 ? ' ' : ''}`);
        visit(field, depth + 1);
      });
      emit(entries.length > 0 ? `${newline(depth)}}` : '}');
    } else {
      // A leaf or an object of leaves (a range) at once; JSON strings hold no raw newline to misplace.
      const text = JSON.stringify(item, null, indent) ?? 'null';
      emit(indent > 0 ? text.replaceAll('\n', newline(depth)) : text);
    }
  };
  visit(value, 0);
  emit('\n');
  if (piece.length > 0) write(piece);
}

/** An object whose fields are all leaves: its text is small, whatever the disk. */
function isFlat(item: object): boolean {
  for (const field of Object.values(item)) if (field !== null && typeof field === 'object') return false;
  return true;
}
