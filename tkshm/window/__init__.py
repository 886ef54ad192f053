"""The window: Qt's *Shared Memory* dialog, rebuilt with Tk. The only package that imports
tkinter or ``PIL.ImageTk``.

Where Qt's example has ``main.cpp`` and ``dialog.cpp``, this package has:

==============  ===================================================================
``main``        :func:`run`, Qt's ``main()``: the Tk root, the dialog, the event loop
``dialog``      :class:`Dialog`: the widgets and the two slots, ``load_from_file`` and
                ``display_from_shared_memory`` (Qt's ``loadFromFile``/``loadFromMemory``)
``picture``     the picture area: fitting a big image to the window, draft then smooth
``follow``      follow mode: show the newest frame of a still image or a stream
``tracepane``   the trace pane: each IPC step of this process, as it happens
``worker``      the one background thread, so that the Tk main loop never blocks
``status``      the words of the status line (numbers kept with their units)
``widgets``     tooltips and the zoom (Ctrl+plus, Ctrl+minus, Ctrl+0)
==============  ===================================================================

How the window stays responsive -- Tk is single-threaded: only the main thread touches
widgets. Anything that may take long (decoding a 4K PNG, waiting for another process's lock,
attaching) runs on one worker thread, in the order it was asked for, and hands its result
back through a ``queue.Queue`` that the main thread drains from an ``after()`` callback.

For end-to-end tests, ``TKSHM_TEST_EVENTS=1`` makes the window print what it does to
stdout, one line per event: ``READY``, ``GEOM <widget> X Y [W H]``, ``LABEL <text>``,
``CONTROL PID NAME X Y W H``, ``SHOWN source=file|shm gen=N quality=draft|fine ms=T``,
``CLEARED``, and in follow mode, a few times a second while a stream plays,
``FRAME gen=N fps=F skipped=S latency_ms=L``.
"""
