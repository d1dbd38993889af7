import { formatTime } from '../lib/time';

/** A timestamp shown in UTC that does not wrap inside table cells; the exact RFC 3339 value is in `datetime`. */
export function Time(props: { iso: string | null | undefined }) {
  if (!props.iso) return <>—</>;
  return <time dateTime={props.iso}>{formatTime(props.iso)}</time>;
}
