// Translation unit that carries the shared torch precompiled header.
