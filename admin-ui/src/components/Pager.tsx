export function Pager(props: { hasPrevious: boolean; hasNext: boolean; previous: () => void; next: () => void; first: () => void; label: string }) {
  return (
    <nav class="pager" aria-label={`${props.label} pages`}>
      <button type="button" onClick={props.first} disabled={!props.hasPrevious}>
        First page
      </button>
      <button type="button" onClick={props.previous} disabled={!props.hasPrevious}>
        Previous
      </button>
      <button type="button" onClick={props.next} disabled={!props.hasNext}>
        Next page
      </button>
    </nav>
  );
}
