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

// On the Connect form, only the chosen authentication method's fields show
// (without the script, every method's fields show and the chosen one counts).
const methods = document.querySelectorAll('input[data-method]');
function showChosenMethod() {
  const chosen = document.querySelector('input[data-method]:checked');
  for (const fields of document.querySelectorAll('[data-method-fields]')) {
    fields.hidden = chosen != null && fields.dataset.methodFields !== chosen.value;
  }
}
for (const radio of methods) radio.addEventListener('change', showChosenMethod);
showChosenMethod();

// After a connection test, its outcome takes the focus (and is read out).
document.getElementById('outcome')?.focus();
