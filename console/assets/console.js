// Follows a running sync: a list marked `data-events` is filled from the
// server's `progress` events, and the page reloads when the sync ends.
for (const list of document.querySelectorAll('[data-events]')) {
  const source = new EventSource(list.dataset.events);
  source.addEventListener('progress', (event) => {
    const schedule = JSON.parse(event.data);
    if (!schedule.running) {
      source.close();
      window.location.reload();
      return;
    }
    list.replaceChildren(...schedule.progress.map((stream) => {
      const item = document.createElement('li');
      const of = stream.expected == null ? '' : ` of ${stream.expected}`;
      const done = stream.verdict == null ? '' : ` (${stream.verdict})`;
      item.textContent = `${stream.stream}: ${stream.records}${of} records${done}`;
      return item;
    }));
  });
}
