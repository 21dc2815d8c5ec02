// The scaffolder pages' script: the template form as a wizard (one page at a
// time, each checked by the server before the next, then a review), catalog
// suggestions for the entity pickers, and the task page's live log. Without
// it, the form shows every page at once and the task page shows the log as
// it was when loaded.
(() => {
  'use strict';

  const form = document.getElementById('template-form');
  if (form) {
    wizard(form);
    form.querySelectorAll('input[data-picker]').forEach(picker);
  }
  const task = document.getElementById('task');
  if (task) {
    live(task);
  }

  // ---------------------------------------------------------------- wizard

  function wizard(form) {
    const pages = Array.from(form.querySelectorAll('.wizard-page'));
    const review = document.getElementById('wizard-review');
    const steps = document.getElementById('wizard-steps');
    const back = document.getElementById('wizard-back');
    const next = document.getElementById('wizard-next');
    const create = document.getElementById('create-task');
    const formErrors = document.getElementById('form-errors');
    const validateUrl = form.dataset.validate;
    let current = 0;
    let busy = false;

    form.classList.add('wizard-on');
    steps.hidden = false;

    function show(index) {
      current = index;
      pages.forEach((p, i) => { p.hidden = i !== index; });
      const onReview = index === pages.length;
      review.hidden = !onReview;
      back.hidden = index === 0;
      next.hidden = onReview;
      create.hidden = !onReview;
      steps.querySelectorAll('li').forEach((li, i) => {
        li.classList.toggle('done', i < index);
        if (i === index) {
          li.setAttribute('aria-current', 'step');
        } else {
          li.removeAttribute('aria-current');
        }
      });
      if (onReview) {
        fillReview();
        review.focus();
      } else {
        const target = pages[index].querySelector('[aria-invalid="true"], input:not([type=hidden]), select, textarea');
        if (target) {
          target.focus();
        }
      }
    }

    function fieldOf(name) {
      return form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    }

    function controls(field) {
      return field.querySelectorAll('input, select, textarea, fieldset');
    }

    function clearErrors(scope) {
      scope.querySelectorAll('.field-error').forEach((el) => {
        el.textContent = '';
        el.hidden = true;
      });
      scope.querySelectorAll('.has-error').forEach((el) => el.classList.remove('has-error'));
      scope.querySelectorAll('[aria-invalid]').forEach((el) => {
        el.removeAttribute('aria-invalid');
        const ids = (el.getAttribute('aria-describedby') || '').split(' ').filter((id) => id && !id.endsWith('-error'));
        if (ids.length) {
          el.setAttribute('aria-describedby', ids.join(' '));
        } else {
          el.removeAttribute('aria-describedby');
        }
      });
      formErrors.hidden = true;
    }

    function showFormErrors(messages) {
      const list = formErrors.querySelector('ul');
      list.textContent = '';
      messages.forEach((m) => {
        const li = document.createElement('li');
        li.textContent = m;
        list.appendChild(li);
      });
      formErrors.hidden = messages.length === 0;
    }

    function showErrors(errors) {
      const loose = [];
      errors.forEach((e) => {
        const field = e.field && fieldOf(e.field);
        const el = field && field.querySelector('.field-error');
        if (!el) {
          loose.push(e.message);
          return;
        }
        el.textContent = e.message;
        el.hidden = false;
        field.classList.add('has-error');
        controls(field).forEach((c) => {
          if (c.matches('fieldset') || !c.closest('fieldset.choices, fieldset.repo-url')) {
            c.setAttribute('aria-invalid', 'true');
            const ids = (c.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
            if (!ids.includes(el.id)) {
              ids.push(el.id);
            }
            c.setAttribute('aria-describedby', ids.join(' '));
          }
        });
      });
      showFormErrors(loose);
    }

    async function checkPage(index) {
      const body = new URLSearchParams(new FormData(form));
      body.set('page', String(index));
      const res = await fetch(validateUrl, {
        method: 'POST',
        credentials: 'same-origin',
        headers: {
          'Content-Type': 'application/x-www-form-urlencoded',
          'X-Requested-With': 'XMLHttpRequest',
        },
        body,
      });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) {
        throw new Error((data.error && data.error.message) || `The check failed (${res.status}).`);
      }
      return data.errors || [];
    }

    async function forward() {
      if (busy) {
        return;
      }
      busy = true;
      next.disabled = true;
      const page = pages[current];
      try {
        const errors = await checkPage(current);
        clearErrors(page);
        if (errors.length) {
          showErrors(errors);
          const first = page.querySelector('[aria-invalid="true"]');
          if (first) {
            first.focus();
          }
        } else {
          show(current + 1);
        }
      } catch (err) {
        showFormErrors([err.message]);
      } finally {
        busy = false;
        next.disabled = false;
      }
    }

    function display(field) {
      const kind = field.dataset.kind;
      if (kind === 'checkbox') {
        return field.querySelector('input').checked ? 'Yes' : 'No';
      }
      if (kind === 'checkboxes' || kind === 'radio') {
        return Array.from(field.querySelectorAll('input:checked'))
          .map((i) => i.closest('label').textContent.trim())
          .join(', ');
      }
      if (kind === 'secret') {
        return field.querySelector('input').value ? '••••••••' : '';
      }
      if (kind === 'password') {
        return field.querySelector('input').value ? '••••••••' : '';
      }
      if (kind === 'select') {
        const s = field.querySelector('select');
        return s.value ? s.options[s.selectedIndex].textContent.trim() : '';
      }
      if (kind === 'repo-url') {
        const part = (p) => (field.querySelector(`[name$="#${p}"]`) || {}).value || '';
        const [host, owner, repo] = ['host', 'owner', 'repo'].map(part);
        if (!host && !owner && !repo) {
          return '';
        }
        const q = new URLSearchParams();
        if (owner) q.set('owner', owner);
        if (repo) q.set('repo', repo);
        return `${host}?${q}`;
      }
      const c = field.querySelector('textarea, input');
      return c ? c.value : '';
    }

    function fillReview() {
      const list = document.getElementById('review-list');
      list.textContent = '';
      pages.forEach((page) => {
        page.querySelectorAll('.field[data-kind]').forEach((field) => {
          const dt = document.createElement('dt');
          dt.textContent = field.dataset.label;
          const dd = document.createElement('dd');
          const value = display(field);
          dd.textContent = value || '—';
          if (!value) {
            dd.classList.add('none');
          }
          dd.dataset.field = field.dataset.field;
          list.append(dt, dd);
        });
      });
    }

    next.hidden = false;
    next.addEventListener('click', forward);
    back.addEventListener('click', () => show(Math.max(0, current - 1)));
    // Enter in a field means Next until the review; only there does it create, once.
    form.addEventListener('submit', (event) => {
      if (current < pages.length) {
        event.preventDefault();
        forward();
      } else if (create.dataset.sent) {
        event.preventDefault();
      } else {
        create.dataset.sent = '1';
        create.setAttribute('aria-disabled', 'true');
      }
    });

    // After the server refused the form, open the first page with a problem.
    const firstBad = pages.findIndex((p) => p.querySelector('.field-error:not([hidden])'));
    show(firstBad >= 0 ? firstBad : 0);
  }

  // ---------------------------------------------------------------- pickers

  function picker(input) {
    const list = document.getElementById(input.getAttribute('list'));
    let filters = [];
    try {
      filters = JSON.parse(input.dataset.picker || '[]');
    } catch (_) {
      filters = [];
    }
    let timer = 0;
    let seq = 0;
    input.addEventListener('input', () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(async () => {
        const term = input.value.trim();
        if (!term || !list) {
          return;
        }
        const q = new URLSearchParams();
        filters.forEach((f) => q.append('filter', f));
        q.set('fullTextFilterTerm', term);
        q.set('fullTextFilterFields', 'metadata.name,metadata.title,spec.profile.displayName');
        q.set('limit', '20');
        q.set('orderField', 'metadata.name,asc');
        ['kind', 'metadata.namespace', 'metadata.name', 'metadata.title'].forEach((f) => q.append('fields', f));
        const mine = ++seq;
        try {
          const res = await fetch(`/api/catalog/entities/by-query?${q}`, {
            credentials: 'same-origin',
            headers: { 'X-Requested-With': 'XMLHttpRequest' },
          });
          if (!res.ok || mine !== seq) {
            return;
          }
          const data = await res.json();
          list.textContent = '';
          (data.items || []).forEach((e) => {
            const m = e.metadata || {};
            const ref = `${String(e.kind).toLowerCase()}:${m.namespace || 'default'}/${m.name}`;
            const option = document.createElement('option');
            option.value = ref;
            option.textContent = `${m.title || m.name} (${e.kind})`;
            list.appendChild(option);
          });
        } catch (_) {
          // Suggestions are a convenience; typing a ref still works.
        }
      }, 200);
    });
  }

  // ---------------------------------------------------------------- task page

  function live(task) {
    const url = task.dataset.stream;
    let last = Number(task.dataset.last || 0);
    const status = document.getElementById('task-status');

    function tick() {
      const now = Date.now();
      task.querySelectorAll('.step[data-status="processing"][data-started]').forEach((step) => {
        const seconds = Math.max(0, Math.round((now - Number(step.dataset.started)) / 1000));
        step.querySelector('.step-duration').textContent = seconds < 60
          ? `${seconds} s`
          : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
      });
    }
    tick();
    window.setInterval(tick, 1000);

    if (!url) {
      return;
    }
    const labels = {
      processing: 'running', completed: 'done', failed: 'failed', skipped: 'skipped', cancelled: 'cancelled', open: 'waiting',
    };
    const classes = {
      processing: 'live', completed: 'ok', failed: 'bad', skipped: 'warn', cancelled: 'warn',
    };

    function append(event) {
      const body = event.body || {};
      const stepId = body.stepId || '';
      const step = stepId ? task.querySelector(`.step[data-step="${CSS.escape(stepId)}"]`) : null;
      const log = step ? step.querySelector('.log') : task.querySelector('.log[data-log=""]');
      if (log) {
        const li = document.createElement('li');
        li.dataset.id = String(event.id);
        const time = document.createElement('time');
        const at = new Date(event.createdAt);
        time.textContent = Number.isNaN(at.getTime()) ? '' : at.toISOString().slice(11, 19);
        const text = document.createElement('span');
        text.textContent = body.message || '';
        li.append(time, ' ', text);
        log.appendChild(li);
      }
      if (step && body.status) {
        step.dataset.status = body.status;
        step.className = `step ${classes[body.status] || ''}`;
        const badge = step.querySelector('.step-status');
        badge.textContent = labels[body.status] || body.status;
        badge.className = `badge ${classes[body.status] || ''} step-status`;
        if (body.status === 'processing') {
          step.dataset.started = String(Date.parse(event.createdAt) || Date.now());
          step.querySelector('details').open = true;
          if (status.textContent === 'open') {
            status.textContent = 'processing';
            status.className = 'badge live task-status';
          }
        }
      }
    }

    let source = null;
    // Failed connections in a row; past the limit, stop and say so.
    let failures = 0;
    function connect() {
      source = new EventSource(`${url}?after=${last}`);
      const handle = (e) => {
        let event;
        try {
          event = JSON.parse(e.data);
        } catch (_) {
          return;
        }
        if (typeof event.id !== 'number' || event.id <= last) {
          return;
        }
        last = event.id;
        append(event);
        if (event.type === 'completion' || event.type === 'cancelled') {
          source.close();
          // The output and the final state come with the page.
          window.location.reload();
        }
      };
      ['log', 'recovered', 'completion', 'cancelled'].forEach((t) => source.addEventListener(t, handle));
      source.addEventListener('open', () => { failures = 0; });
      source.addEventListener('error', () => {
        // The browser reconnects by itself, with the URL it started with;
        // start again from the last event seen instead.
        source.close();
        failures += 1;
        if (failures > 30) {
          status.insertAdjacentText('afterend', ' Live updates stopped: reload the page.');
          return;
        }
        window.setTimeout(connect, 2000);
      });
    }
    connect();
  }
})();
